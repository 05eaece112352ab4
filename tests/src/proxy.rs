//! A recording proxy on a Docker unix socket: every request a client sends through it is
//! forwarded to the real socket and its method, path and query are recorded. The prune tests
//! point `ci-docker-prune --docker-host unix://<proxy>` at it and assert on what was asked.
//!
//! A test can also change the world at a chosen moment ([`RecordingProxy::before_first`]: run
//! a closure right before the first request that matches is forwarded, e.g. tag an image
//! between the prune's listing and its delete) and make the daemon fail on purpose
//! ([`RecordingProxy::answer`]: answer matching requests itself, e.g. a 500 on one delete).
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

/// Decides whether a rule applies: the request, and every request recorded before it.
type Matcher = Box<dyn Fn(&Recorded, &[Recorded]) -> bool + Send>;

enum Action {
    /// Run once, right before the request is forwarded.
    Run(Option<Box<dyn FnOnce() + Send>>),
    /// Answer every matching request with this status and `{"message": ...}`.
    Answer { status: u16, message: String },
}

struct Rule {
    when: Matcher,
    action: Action,
}

type Rules = Arc<Mutex<Vec<Rule>>>;

/// A running recording proxy. Stops when dropped.
pub struct RecordingProxy {
    socket: PathBuf,
    log: Arc<Mutex<Vec<Recorded>>>,
    rules: Rules,
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

fn json_response(status: u16, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The first rule that applies to `rec` (given what came before it), applied: a closure run
/// (then forgotten), or the answer to send instead of forwarding.
fn apply_rules(rules: &Rules, rec: &Recorded, before: &[Recorded]) -> Option<Response<Body>> {
    let mut run = None;
    let answer = {
        let mut rules = rules.lock().ok()?;
        let rule = rules
            .iter_mut()
            .find(|r| !matches!(r.action, Action::Run(None)) && (r.when)(rec, before))?;
        match &mut rule.action {
            Action::Run(f) => {
                run = f.take();
                None
            }
            Action::Answer { status, message } => Some(json_response(*status, message)),
        }
    };
    // Outside the lock: the closure may take its time (it runs docker commands).
    if let Some(f) = run {
        f();
    }
    answer
}

async fn forward(
    upstream: Arc<PathBuf>,
    log: Arc<Mutex<Vec<Recorded>>>,
    rules: Rules,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let rec = Recorded {
        method: req.method().to_string(),
        path: strip_version(req.uri().path()),
        query: percent_decode(req.uri().query().unwrap_or("")),
    };
    let before = match log.lock() {
        Ok(mut l) => {
            let before = l.clone();
            l.push(rec.clone());
            before
        }
        Err(_) => Vec::new(),
    };
    if let Some(answer) = apply_rules(&rules, &rec, &before) {
        return Ok(answer);
    }
    let error = |msg: String| Ok(json_response(502, &format!("proxy: {msg}")));
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
        let rules: Rules = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let upstream = Arc::new(upstream.to_path_buf());
        let thread = {
            let socket = socket.clone();
            let log = log.clone();
            let rules = rules.clone();
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
                                let rules = rules.clone();
                                tokio::spawn(async move {
                                    let svc = hyper::service::service_fn(move |req| {
                                        forward(upstream.clone(), log.clone(), rules.clone(), req)
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
            rules,
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

    /// Run `f` once, right before the first request that `when` matches is forwarded. `when`
    /// sees the request and every request recorded before it (so "the first request after the
    /// image listing" is `|_, before| before.last().is_some_and(|p| p.path == "/images/json")`).
    /// `f` runs on the proxy's thread while the client waits for its answer.
    pub fn before_first(
        &self,
        when: impl Fn(&Recorded, &[Recorded]) -> bool + Send + 'static,
        f: impl FnOnce() + Send + 'static,
    ) {
        self.add(Rule {
            when: Box::new(when),
            action: Action::Run(Some(Box::new(f))),
        });
    }

    /// Answer every request that `when` matches with `status` and `{"message": message}`
    /// instead of forwarding it: the daemon failing on purpose. `when` sees the request and
    /// every request recorded before it. The request is still recorded.
    pub fn answer(
        &self,
        when: impl Fn(&Recorded, &[Recorded]) -> bool + Send + 'static,
        status: u16,
        message: &str,
    ) {
        self.add(Rule {
            when: Box::new(when),
            action: Action::Answer {
                status,
                message: message.to_string(),
            },
        });
    }

    fn add(&self, rule: Rule) {
        if let Ok(mut r) = self.rules.lock() {
            r.push(rule);
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

/// The value of query parameter `key` as Docker reads a boolean (`httputils.BoolValue`):
/// set unless it is absent, empty, `0`, `no`, `false` or `none` (any case). Every occurrence
/// counts, so a repeated key cannot hide a true one.
pub fn bool_param(query: &str, key: &str) -> bool {
    query.split('&').any(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let v = v.trim().to_ascii_lowercase();
        k == key && !matches!(v.as_str(), "" | "0" | "no" | "false" | "none")
    })
}

/// Requests that break the prune's safety contract: any `all` Docker reads as true, any volume
/// prune or volume delete, any daemon-side prune other than the build cache's, any image delete
/// that names something other than an image id (`sha256:...`) — deleting by name would untag a
/// tagged image —, any image delete of an id in `tagged_ids`, any forced image delete, and any
/// container delete that removes volumes (`v`) or forces (`force`).
pub fn violations(requests: &[Recorded], tagged_ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for r in requests {
        if bool_param(&r.query, "all") || r.query.contains("\"all\"") {
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
                if bool_param(&r.query, "force") {
                    out.push(format!("forces an image delete: {r}"));
                }
            }
            if r.path.starts_with("/containers/")
                && (bool_param(&r.query, "v") || bool_param(&r.query, "force"))
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
            (rec("POST", "/build/prune", "all=true"), "asks for all"),
            (rec("GET", "/images/json", "all=1"), "asks for all"),
            (
                rec("GET", "/containers/json", "limit=5&all=True"),
                "asks for all",
            ),
            (
                rec("GET", "/containers/json", "all=false&all=yes"),
                "asks for all",
            ),
            (rec("POST", "/volumes/prune", ""), "touches volumes"),
            (rec("DELETE", "/volumes/data", ""), "touches volumes"),
            (
                rec("DELETE", "/images/redis:7-alpine", "force=false"),
                "by name",
            ),
            (
                rec("DELETE", "/images/sha256:tagged", "force=false"),
                "a tagged image",
            ),
            (
                rec("POST", "/images/prune", r#"filters={"dangling":["true"]}"#),
                "daemon-side prune",
            ),
            (
                rec(
                    "DELETE",
                    "/images/sha256:leftover",
                    "force=true&noprune=false",
                ),
                "forces an image delete",
            ),
            (
                rec("DELETE", "/images/sha256:leftover", "force=1"),
                "forces an image delete",
            ),
            (
                rec(
                    "DELETE",
                    "/images/sha256:leftover",
                    "noprune=false&force=TRUE",
                ),
                "forces an image delete",
            ),
            (
                rec("DELETE", "/containers/abc", "v=true"),
                "with volumes or force",
            ),
            (
                rec("DELETE", "/containers/abc", "v=1&force=false"),
                "with volumes or force",
            ),
            (
                rec("DELETE", "/containers/abc", "v=false&force=1"),
                "with volumes or force",
            ),
            (
                rec("DELETE", "/containers/abc", "force=yes"),
                "with volumes or force",
            ),
        ];
        for (b, why) in &bad {
            let v = violations(std::slice::from_ref(b), &tagged);
            assert!(v.iter().any(|m| m.contains(why)), "{b}: {v:?}");
        }
        // what Docker reads as false stays allowed
        for q in ["force=0", "force=no", "force=False", "force=none", "force="] {
            let ok = rec("DELETE", "/images/sha256:leftover", q);
            assert!(violations(&[ok], &tagged).is_empty(), "{q}");
        }
    }

    /// A fake daemon on a unix socket: answers every request `200 {}` and counts them.
    fn fake_upstream(dir: &Path) -> (PathBuf, Arc<Mutex<usize>>) {
        let sock = dir.join("upstream.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let served = Arc::new(Mutex::new(0));
        let count = served.clone();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for conn in listener.incoming() {
                let Ok(mut c) = conn else { return };
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                *count.lock().unwrap() += 1;
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                );
            }
        });
        (sock, served)
    }

    /// (status, body) of `METHOD path` through the proxy.
    fn request(proxy: &RecordingProxy, method: &str, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&proxy.socket).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let code = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (code, body)
    }

    #[test]
    fn rules_run_once_before_the_first_match_and_answer_in_the_daemons_place() {
        let dir = tempfile::tempdir().unwrap();
        let (upstream, served) = fake_upstream(dir.path());
        let proxy = RecordingProxy::start(&upstream).unwrap();
        let ran = Arc::new(Mutex::new(Vec::new()));
        let r = ran.clone();
        let seen = proxy.log.clone();
        // the first request after the image listing, whatever it is
        proxy.before_first(
            |_, before| before.last().is_some_and(|p| p.path == "/images/json"),
            move || {
                let n = seen.lock().map(|l| l.len()).unwrap_or(0);
                r.lock().unwrap().push(n);
            },
        );
        proxy.answer(
            |r, _| r.method == "DELETE" && r.path == "/containers/bad",
            500,
            "injected",
        );
        assert_eq!(request(&proxy, "GET", "/v1.41/services").0, 200);
        assert!(ran.lock().unwrap().is_empty(), "ran before its moment");
        assert_eq!(request(&proxy, "GET", "/v1.41/images/json").0, 200);
        assert_eq!(request(&proxy, "GET", "/v1.41/tasks").0, 200);
        // ran once, right before the third request was forwarded (it was recorded already)
        assert_eq!(*ran.lock().unwrap(), [3]);
        assert_eq!(request(&proxy, "GET", "/v1.41/images/json").0, 200);
        assert_eq!(request(&proxy, "GET", "/v1.41/tasks").0, 200);
        assert_eq!(ran.lock().unwrap().len(), 1, "ran twice");
        let (code, body) = request(&proxy, "DELETE", "/v1.41/containers/bad?v=false");
        assert_eq!((code, body.as_str()), (500, r#"{"message":"injected"}"#));
        assert_eq!(request(&proxy, "DELETE", "/v1.41/containers/good").0, 200);
        // every request recorded, the answered one too; only the others reached the daemon
        assert_eq!(proxy.requests().len(), 7);
        assert_eq!(*served.lock().unwrap(), 6);
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
