//! A recording proxy on a Docker unix socket: every request a client sends through it is
//! forwarded to the real socket and its method, path and query are recorded. The prune tests
//! point `ci-docker-prune --docker-host unix://<proxy>` at it and assert on what was asked.
//!
//! Built on hyper 1 (server side: one http1 connection per client connection; client side: a
//! fresh http1 connection to the upstream socket per request), running on its own thread and
//! runtime so synchronous tests can use it. Upgrades (attach/exec) are not proxied: the prune
//! never asks for them.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};

/// One request seen by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// Path with the `/v1.xx` prefix removed.
    pub path: String,
    /// Raw query string, percent-decoded.
    pub query: String,
}

impl std::fmt::Display for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.query.is_empty() {
            write!(f, "{} {}", self.method, self.path)
        } else {
            write!(f, "{} {}?{}", self.method, self.path, self.query)
        }
    }
}

/// A running recording proxy. Stops when dropped.
pub struct RecordingProxy {
    socket: PathBuf,
    log: Arc<Mutex<Vec<Recorded>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

type Body = BoxBody<Bytes, hyper::Error>;

fn strip_version(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some(i) = rest.find('/') {
            if rest[..i].chars().all(|c| c.is_ascii_digit() || c == '.') {
                return rest[i..].to_string();
            }
        }
    }
    path.to_string()
}

/// Percent-decode (`%22` → `"`, `+` left as is).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn forward(
    upstream: Arc<PathBuf>,
    log: Arc<Mutex<Vec<Recorded>>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let rec = Recorded {
        method: req.method().to_string(),
        path: strip_version(req.uri().path()),
        query: percent_decode(req.uri().query().unwrap_or("")),
    };
    if let Ok(mut l) = log.lock() {
        l.push(rec);
    }
    let error = |msg: String| {
        let mut r = Response::new(
            Full::new(Bytes::from(format!("{{\"message\":\"proxy: {msg}\"}}")))
                .map_err(|never| match never {})
                .boxed(),
        );
        *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
        Ok(r)
    };
    let stream = match UnixStream::connect(upstream.as_ref()).await {
        Ok(s) => s,
        Err(e) => return error(format!("upstream connect: {e}")),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(x) => x,
        Err(e) => return error(format!("upstream handshake: {e}")),
    };
    tokio::spawn(conn);
    match sender.send_request(req).await {
        Ok(resp) => Ok(resp.map(|b| b.boxed())),
        Err(e) => error(format!("upstream request: {e}")),
    }
}

impl RecordingProxy {
    /// Start a proxy in front of the unix socket `upstream`.
    pub fn start(upstream: &Path) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("ccci-proxy").tempdir()?;
        let socket = dir.path().join("docker.sock");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let upstream = Arc::new(upstream.to_path_buf());
        let thread = {
            let socket = socket.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match UnixListener::bind(&socket) {
                        Ok(l) => {
                            let _ = ready_tx.send(Ok(()));
                            l
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    loop {
                        tokio::select! {
                            _ = &mut stop_rx => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                let upstream = upstream.clone();
                                let log = log.clone();
                                tokio::spawn(async move {
                                    let svc = hyper::service::service_fn(move |req| {
                                        forward(upstream.clone(), log.clone(), req)
                                    });
                                    let _ = hyper::server::conn::http1::Builder::new()
                                        .serve_connection(TokioIo::new(stream), svc)
                                        .await;
                                });
                            }
                        }
                    }
                });
            })
        };
        ready_rx
            .recv()
            .map_err(|e| std::io::Error::other(format!("proxy thread died: {e}")))??;
        Ok(RecordingProxy {
            socket,
            log,
            stop: Some(stop_tx),
            thread: Some(thread),
            _dir: dir,
        })
    }

    /// `unix://<proxy socket>`, for `--docker-host`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Every request recorded so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Forget what was recorded.
    pub fn clear(&self) {
        if let Ok(mut l) = self.log.lock() {
            l.clear();
        }
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Requests that break the prune's safety contract: any `all` set to true/1, any volume
/// prune or volume delete, any image delete that names something other than an image id
/// (`sha256:...`) — deleting by name would untag a tagged image —, and any image delete of an id
/// in `tagged_ids`.
pub fn violations(requests: &[Recorded], tagged_ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for r in requests {
        let all_set = r.query.split('&').any(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            k == "all" && (v == "1" || v.eq_ignore_ascii_case("true"))
        }) || r.query.contains("\"all\"");
        if all_set {
            out.push(format!("asks for all: {r}"));
        }
        if r.path.starts_with("/volumes") && (r.method != "GET" || r.path.contains("prune")) {
            out.push(format!("touches volumes: {r}"));
        }
        if r.path.contains("/prune") && r.path != "/build/prune" {
            out.push(format!("uses a daemon-side prune: {r}"));
        }
        if r.method == "DELETE" {
            if let Some(target) = r.path.strip_prefix("/images/") {
                if !target.starts_with("sha256:") {
                    out.push(format!("deletes an image by name: {r}"));
                }
                if tagged_ids.iter().any(|t| t == target) {
                    out.push(format!("deletes a tagged image: {r}"));
                }
                if r.query.contains("force=true") || r.query.contains("force=1") {
                    out.push(format!("forces an image delete: {r}"));
                }
            }
            if r.path.starts_with("/containers/")
                && (r.query.contains("v=true") || r.query.contains("force=true"))
            {
                out.push(format!("removes a container with volumes or force: {r}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(method: &str, path: &str, query: &str) -> Recorded {
        Recorded {
            method: method.into(),
            path: path.into(),
            query: query.into(),
        }
    }

    #[test]
    fn violations_catch_each_forbidden_request() {
        let tagged = vec!["sha256:tagged".to_string()];
        let ok = [
            rec(
                "GET",
                "/containers/json",
                "all=false&limit=2147483647&size=false",
            ),
            rec(
                "DELETE",
                "/images/sha256:leftover",
                "force=false&noprune=false",
            ),
            rec("POST", "/build/prune", r#"filters={"until":["86400s"]}"#),
            rec(
                "DELETE",
                "/containers/abc",
                "v=false&force=false&link=false",
            ),
        ];
        assert!(violations(&ok, &tagged).is_empty());
        let bad = [
            rec("POST", "/build/prune", "all=true"),
            rec("GET", "/images/json", "all=1"),
            rec("POST", "/volumes/prune", ""),
            rec("DELETE", "/volumes/data", ""),
            rec("DELETE", "/images/redis:7-alpine", "force=false"),
            rec("DELETE", "/images/sha256:tagged", "force=false"),
            rec("POST", "/images/prune", r#"filters={"dangling":["true"]}"#),
            rec("DELETE", "/containers/abc", "v=true"),
        ];
        for b in &bad {
            assert!(
                !violations(std::slice::from_ref(b), &tagged).is_empty(),
                "{b}"
            );
        }
    }

    #[test]
    fn version_prefix_and_decoding() {
        assert_eq!(strip_version("/v1.41/images/json"), "/images/json");
        assert_eq!(strip_version("/_ping"), "/_ping");
        assert_eq!(
            percent_decode("filters=%7B%22until%22%7D"),
            "filters={\"until\"}"
        );
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
