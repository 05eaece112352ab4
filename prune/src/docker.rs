//! The ONLY module that talks to the Docker daemon.
//!
//! A deliberately narrow wrapper over bollard: every request it can send is spelled out here
//! with explicit options, and its public API has no parameter through which a caller could ask
//! for `all`, for `force`, or for anything about volumes. There is no generic passthrough.
//!
//! | function | request |
//! |---|---|
//! | [`DockerClient::connect`] | `GET /version` (API version negotiation) |
//! | [`DockerClient::list_services`] | `GET /services`, read raw for `PreviousSpec` (on an error answer: `GET /info`, to tell "not in a swarm" from a worker or a broken swarm) |
//! | [`DockerClient::list_tasks`] | `GET /tasks` (every task the swarm keeps, history included: the converge gate tells a retry after a failure from a first attempt; an error answer is read as for services) |
//! | [`DockerClient::list_containers`] | `GET /containers/json?limit=2147483647` (every state, without `all`) |
//! | [`DockerClient::container_finished_at`] | `GET /containers/{id}/json` (each stopped container created before the `until` cutoff, when planning: when it stopped) |
//! | [`DockerClient::list_images`] | `GET /images/json` (top-level images, `all=false`) |
//! | [`DockerClient::inspect_image`] | `GET /images/{id}/json` (right before each image delete) |
//! | [`DockerClient::events_since`] | `GET /events?since=<cursor>&until=<now>` (usage state; no filter) |
//! | [`DockerClient::list_build_cache`] | `GET /system/df?type=build-cache` (dry run only) |
//! | [`DockerClient::remove_container`] | `DELETE /containers/{id}?v=false&force=false&link=false` |
//! | [`DockerClient::remove_image`] | `DELETE /images/{id}?force=false&noprune=false` |
//! | [`DockerClient::prune_build_cache`] | `POST /build/prune?filters={"until":["<secs>s"]}` |
//!
//! Containers are listed with a `limit` instead of `all=true`: the Engine API documents `limit`
//! as "return this number of most recently created containers, including non-running ones", so
//! no request this tool sends carries `all` set — which a recording proxy in the tests asserts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::LocalNodeState;
use bollard::query_parameters::{
    EventsOptions, ListContainersOptions, ListImagesOptions, ListTasksOptions, PruneBuildOptions,
    RemoveContainerOptions, RemoveImageOptions,
};
use bollard::Docker;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use crate::answers::{
    BuildCachePruned, BuildCacheRecord, ContainerInfo, ImageInfo, ImageState, Removal, ServiceInfo,
    ServiceMode, Swarm, TaskInfo,
};
use crate::answers::{EventMark, UsageEvent};
use crate::config::{go_duration, DockerHost};

/// Timeout of one API request, seconds.
const TIMEOUT_SECS: u64 = 120;
/// The dry run's build cache listing: API ≥ 1.42 answers `type=build-cache` alone; 1.41
/// (Docker 20.10) ignores `type` and sizes every container and volume first, linear in the files
/// they hold (measured on 20.10 here: 0.035 s with none, 0.15 s with 300 volumes of 100
/// files). A host whose volumes take longer gets a dry run that says so instead of waiting.
const BUILD_CACHE_LIST_SECS: u64 = 20;

/// Errors talking to the daemon. Every one is a runtime error (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach Docker at {host}: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("Docker API error during {op}: {cause}")]
    Api {
        op: &'static str,
        cause: BollardError,
    },
    #[error("Docker API error during {op}: {message}")]
    Raw { op: &'static str, message: String },
}

/// The narrow client. Counts every API request it sends.
pub struct DockerClient {
    docker: Docker,
    host: DockerHost,
    calls: AtomicU64,
}

fn api(op: &'static str) -> impl FnOnce(BollardError) -> DockerError {
    move |cause| DockerError::Api { op, cause }
}

impl DockerClient {
    /// Connect and negotiate the API version (one request: `GET /version`).
    pub async fn connect(host: &DockerHost) -> Result<Self, DockerError> {
        let unreachable = |reason: String| DockerError::Unreachable {
            host: host.to_string(),
            reason,
        };
        let docker = match host {
            DockerHost::Unix(path) => Docker::connect_with_unix(
                &path.to_string_lossy(),
                TIMEOUT_SECS,
                bollard::API_DEFAULT_VERSION,
            ),
            DockerHost::Tcp(addr) => {
                Docker::connect_with_http(addr, TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            }
        }
        .map_err(|e| unreachable(e.to_string()))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(DockerClient {
            docker,
            host: host.clone(),
            calls: AtomicU64::new(1),
        })
    }

    /// How many API requests this client has sent (the negotiation included).
    pub fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The negotiated API version, e.g. `1.41`.
    pub fn api_version(&self) -> String {
        let v = self.docker.client_version();
        format!("{}.{}", v.major_version, v.minor_version)
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Every swarm service (one request; on an error answer one more, `GET /info`, decides what
    /// the error means: see [`Swarm`]).
    pub async fn list_services(&self) -> Result<Swarm<Vec<ServiceInfo>>, DockerError> {
        // Read raw: bollard 0.21's `Service` has no `PreviousSpec` (the rollback image).
        const OP: &str = "list services";
        let (code, body) = self.raw_get(OP, "/services").await?;
        if code != 200 {
            return self.swarm_state(error_message(code, &body)).await;
        }
        parse_services(&body)
            .map(Swarm::Listed)
            .map_err(|message| DockerError::Raw { op: OP, message })
    }

    /// What an error answer to a swarm listing means. A transport error (no answer at all) is
    /// a runtime error; an answer from the daemon is read with the node's swarm state: only
    /// `inactive` (not part of a swarm) means there is nothing to list.
    async fn swarm_error<T>(
        &self,
        e: BollardError,
        op: &'static str,
    ) -> Result<Swarm<T>, DockerError> {
        let BollardError::DockerResponseServerError { message, .. } = e else {
            return Err(api(op)(e));
        };
        self.swarm_state(message).await
    }

    /// [`Self::swarm_error`] for an error answer with `message`: one `GET /info`.
    async fn swarm_state<T>(&self, message: String) -> Result<Swarm<T>, DockerError> {
        self.count();
        let info = self.docker.info().await.map_err(api("read swarm state"))?;
        let swarm = info.swarm.unwrap_or_default();
        Ok(match (swarm.local_node_state, swarm.control_available) {
            (Some(LocalNodeState::INACTIVE), _) => Swarm::NoSwarm,
            (Some(LocalNodeState::ACTIVE), Some(false) | None) => Swarm::Worker,
            _ => Swarm::Unavailable(message),
        })
    }

    /// Every task the swarm keeps, in every desired state (one request, whatever the number
    /// of services; an error answer is read as in [`DockerClient::list_services`]).
    pub async fn list_tasks(&self) -> Result<Swarm<Vec<TaskInfo>>, DockerError> {
        self.count();
        let tasks = match self.docker.list_tasks(None::<ListTasksOptions>).await {
            Ok(t) => t,
            Err(e) => return self.swarm_error(e, "list tasks").await,
        };
        Ok(Swarm::Listed(
            tasks
                .into_iter()
                .map(|t| {
                    let status = t.status.unwrap_or_default();
                    TaskInfo {
                        service_id: t.service_id.unwrap_or_default(),
                        slot: t.slot.map(|s| s.max(0) as u64).unwrap_or(0),
                        node_id: t.node_id.unwrap_or_default(),
                        desired_state: t.desired_state.map(|s| s.to_string()).unwrap_or_default(),
                        state: status.state.map(|s| s.to_string()).unwrap_or_default(),
                        err: status.err.unwrap_or_default(),
                        version: t.version.and_then(|v| v.index).unwrap_or(0),
                    }
                })
                .collect(),
        ))
    }

    /// Every container in every state (see the module doc for why `limit`, not `all`).
    pub async fn list_containers(&self) -> Result<Vec<ContainerInfo>, DockerError> {
        self.count();
        let opts = ListContainersOptions {
            all: false,
            limit: Some(i32::MAX),
            size: false,
            filters: None,
        };
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(api("list containers"))?;
        Ok(list
            .into_iter()
            .map(|c| ContainerInfo {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                image_id: c.image_id.unwrap_or_default(),
                created: c.created.unwrap_or(0),
                service: c
                    .labels
                    .and_then(|mut l| l.remove("com.docker.swarm.service.name")),
                finished: None,
            })
            .collect())
    }

    /// When a container last stopped (`State.FinishedAt`, unix seconds): `None` when it never
    /// ran (Docker's zero time), when the time cannot be read, or when the container is gone.
    pub async fn container_finished_at(&self, id: &str) -> Result<Option<i64>, DockerError> {
        self.count();
        match self.docker.inspect_container(id, None).await {
            Ok(c) => Ok(c
                .state
                .and_then(|s| s.finished_at)
                .and_then(|t| parse_docker_time(&t))),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(api("inspect container")(e)),
        }
    }

    /// The daemon's events from `since` (unix seconds; `None`: everything it still has) up to
    /// `until`, reduced to what the usage state needs ([`UsageEvent`]). The daemon replays only
    /// its last 256 events; every event counts, so no filter is sent (the state tells a full
    /// buffer from a complete one).
    pub async fn events_since(
        &self,
        since: Option<i64>,
        until: i64,
    ) -> Result<Vec<(UsageEvent, EventMark)>, DockerError> {
        use futures_util::StreamExt;
        self.count();
        let opts = EventsOptions {
            since: Some(since.unwrap_or(0).to_string()),
            until: Some(until.to_string()),
            filters: None,
        };
        let mut stream = self.docker.events(Some(opts));
        let mut out = Vec::new();
        let read = async {
            while let Some(e) = stream.next().await {
                let e = e.map_err(api("read events"))?;
                let mark = event_mark(&e);
                out.push((usage_event(e), mark));
            }
            Ok::<(), DockerError>(())
        };
        tokio::time::timeout(Duration::from_secs(TIMEOUT_SECS), read)
            .await
            .map_err(|_| DockerError::Raw {
                op: "read events",
                message: "timed out".into(),
            })??;
        Ok(out)
    }

    /// Top-level images (`all=false`: intermediate layers are not listed).
    pub async fn list_images(&self) -> Result<Vec<ImageInfo>, DockerError> {
        self.count();
        let opts = ListImagesOptions {
            all: false,
            filters: None,
            shared_size: false,
            digests: false,
            manifests: false,
        };
        let list = self
            .docker
            .list_images(Some(opts))
            .await
            .map_err(api("list images"))?;
        Ok(list
            .into_iter()
            .map(|i| ImageInfo {
                id: i.id,
                parent_id: i.parent_id,
                repo_tags: i.repo_tags,
                repo_digests: i.repo_digests,
                created: i.created,
                size: i.size,
            })
            .collect())
    }

    /// One image as it is now; `None` when it is gone (404). Read raw, like the build cache
    /// list: bollard 0.21 models the API ≥1.52 inspect, which has no `Parent`.
    pub async fn inspect_image(&self, id: &str) -> Result<Option<ImageState>, DockerError> {
        const OP: &str = "inspect image";
        let hex = id.strip_prefix("sha256:").unwrap_or("");
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(DockerError::Raw {
                op: OP,
                message: format!("not an image id: {id}"),
            });
        }
        let (code, body) = self.raw_get(OP, &format!("/images/{id}/json")).await?;
        match code {
            200 => parse_image_state(&body)
                .map(Some)
                .map_err(|message| DockerError::Raw { op: OP, message }),
            404 => Ok(None),
            _ => Err(DockerError::Raw {
                op: OP,
                message: format!("HTTP {code}: {}", String::from_utf8_lossy(&body).trim()),
            }),
        }
    }

    /// Build cache records (dry run only). bollard 0.21 models the API ≥1.52 shape of
    /// `/system/df`, which older daemons (1.41) do not send, so this one request is read raw:
    /// both shapes (`BuildCache` and `BuildCacheUsage.Items`) are understood.
    pub async fn list_build_cache(&self) -> Result<Vec<BuildCacheRecord>, DockerError> {
        const OP: &str = "list build cache";
        let (code, body) = self
            .raw_get_within(OP, "/system/df?type=build-cache", BUILD_CACHE_LIST_SECS)
            .await
            .map_err(|e| match e {
                DockerError::Raw { op, message } if message == "timed out" => DockerError::Raw {
                    op,
                    message: format!(
                        "no answer within {BUILD_CACHE_LIST_SECS} s (before API 1.42 the daemon sizes every container and volume for /system/df)"
                    ),
                },
                e => e,
            })?;
        let raw = |message: String| DockerError::Raw { op: OP, message };
        if code != 200 {
            return Err(raw(format!(
                "HTTP {code}: {}",
                String::from_utf8_lossy(&body).trim()
            )));
        }
        parse_df_body(&body).map_err(raw)
    }

    /// `GET /info`, raw (every API version reads the same): where the daemon keeps its data
    /// ([`crate::roots`]).
    pub async fn info_raw(&self) -> Result<serde_json::Value, DockerError> {
        const OP: &str = "info";
        let (code, body) = self.raw_get(OP, "/info").await?;
        let raw = |message: String| DockerError::Raw { op: OP, message };
        if code != 200 {
            return Err(raw(format!(
                "HTTP {code}: {}",
                String::from_utf8_lossy(&body).trim()
            )));
        }
        serde_json::from_slice(&body).map_err(|e| raw(e.to_string()))
    }

    /// `GET <path>` on the negotiated API version over HTTP/1.0: (status code, body). Only for
    /// the requests whose answer bollard 0.21 cannot read from older daemons.
    async fn raw_get(&self, op: &'static str, path: &str) -> Result<(u16, Vec<u8>), DockerError> {
        self.raw_get_within(op, path, TIMEOUT_SECS).await
    }

    /// [`Self::raw_get`] with its own time limit.
    async fn raw_get_within(
        &self,
        op: &'static str,
        path: &str,
        secs: u64,
    ) -> Result<(u16, Vec<u8>), DockerError> {
        self.count();
        let raw = |message: String| DockerError::Raw { op, message };
        let path = format!("/v{}{path}", self.api_version());
        let request =
            format!("GET {path} HTTP/1.0\r\nHost: docker\r\nUser-Agent: ci-docker-prune\r\n\r\n");
        let mut buf = Vec::new();
        let io = async {
            match &self.host {
                DockerHost::Unix(p) => {
                    let mut s = tokio::net::UnixStream::connect(p).await?;
                    s.write_all(request.as_bytes()).await?;
                    s.read_to_end(&mut buf).await?;
                }
                DockerHost::Tcp(a) => {
                    let mut s = tokio::net::TcpStream::connect(a).await?;
                    s.write_all(request.as_bytes()).await?;
                    s.read_to_end(&mut buf).await?;
                }
            }
            Ok::<(), std::io::Error>(())
        };
        tokio::time::timeout(Duration::from_secs(secs), io)
            .await
            .map_err(|_| raw("timed out".into()))?
            .map_err(|e| raw(e.to_string()))?;
        split_response(&buf).map_err(raw)
    }

    /// Remove one stopped container: no force, and its anonymous volumes are kept (`v=false`).
    pub async fn remove_container(&self, id: &str) -> Result<Removal, DockerError> {
        self.count();
        let opts = RemoveContainerOptions {
            v: false,
            force: false,
            link: false,
        };
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(Removal::Removed {
                deleted: vec![id.to_string()],
                untagged: Vec::new(),
            }),
            Err(e) => classify(e, "remove container"),
        }
    }

    /// Remove one image by id: never forced; a conflict (in use now, dependents) is reported,
    /// not overridden. Every `Untagged` item of the answer is kept: a delete by id untags an
    /// image that has at most one tag, so the caller must see what went.
    pub async fn remove_image(&self, id: &str) -> Result<Removal, DockerError> {
        self.count();
        let opts = RemoveImageOptions {
            force: false,
            noprune: false,
            platforms: None,
        };
        match self.docker.remove_image(id, Some(opts), None).await {
            Ok(items) => {
                let mut deleted = Vec::new();
                let mut untagged = Vec::new();
                for i in items {
                    deleted.extend(i.deleted);
                    untagged.extend(i.untagged);
                }
                Ok(Removal::Removed { deleted, untagged })
            }
            Err(e) => classify(e, "remove image"),
        }
    }

    /// Prune build cache older than `until`, with that filter only (never `all`).
    pub async fn prune_build_cache(
        &self,
        until: Duration,
    ) -> Result<BuildCachePruned, DockerError> {
        self.count();
        let mut filters = HashMap::new();
        filters.insert("until".to_string(), vec![go_duration(until)]);
        let opts = PruneBuildOptions {
            filters: Some(filters),
            ..Default::default()
        };
        let r = self
            .docker
            .prune_build(Some(opts))
            .await
            .map_err(api("prune build cache"))?;
        Ok(BuildCachePruned {
            ids: r.caches_deleted.unwrap_or_default(),
            bytes: r.space_reclaimed.unwrap_or(0).max(0) as u64,
        })
    }
}

fn classify(e: BollardError, op: &'static str) -> Result<Removal, DockerError> {
    match e {
        BollardError::DockerResponseServerError {
            status_code: 409,
            message,
        } => Ok(Removal::Conflict(message)),
        BollardError::DockerResponseServerError {
            status_code: 404, ..
        } => Ok(Removal::Gone),
        other => Err(DockerError::Api { op, cause: other }),
    }
}

/// The `message` of an error answer's JSON body, else the body itself.
fn error_message(code: u16, body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("HTTP {code}: {}", String::from_utf8_lossy(body).trim()))
}

/// A `GET /services` body as [`ServiceInfo`]s (every API version: 1.41 to 1.52+).
pub fn parse_services(body: &[u8]) -> Result<Vec<ServiceInfo>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let list = v.as_array().ok_or("not a list of services")?;
    let image = |spec: Option<&serde_json::Value>| {
        spec.and_then(|s| s.pointer("/TaskTemplate/ContainerSpec/Image"))
            .and_then(|i| i.as_str())
            .filter(|i| !i.is_empty())
            .map(str::to_string)
    };
    Ok(list
        .iter()
        .map(|s| {
            let spec = s.get("Spec");
            let mode = spec.and_then(|sp| sp.get("Mode"));
            let mode = match mode {
                Some(m) if m.get("Global").is_some() => ServiceMode::Global,
                Some(m) if m.get("ReplicatedJob").is_some() || m.get("GlobalJob").is_some() => {
                    ServiceMode::Job
                }
                Some(m) => ServiceMode::Replicated(
                    m.pointer("/Replicated/Replicas")
                        .and_then(|r| r.as_i64())
                        .map(|r| r.max(0) as u64)
                        .unwrap_or(1),
                ),
                None => ServiceMode::Replicated(1),
            };
            ServiceInfo {
                id: s
                    .get("ID")
                    .and_then(|i| i.as_str())
                    .unwrap_or_default()
                    .to_string(),
                name: spec
                    .and_then(|sp| sp.get("Name"))
                    .and_then(|n| n.as_str())
                    .unwrap_or_default()
                    .to_string(),
                mode,
                update_state: s
                    .pointer("/UpdateStatus/State")
                    .and_then(|st| st.as_str())
                    .filter(|st| !st.is_empty())
                    .map(str::to_string),
                image: image(spec),
                previous_image: image(s.get("PreviousSpec")),
            }
        })
        .collect())
}

/// A Docker RFC 3339 time as unix seconds; `None` for Docker's zero time
/// (`0001-01-01T00:00:00Z`, "never") or text that is not a time.
pub fn parse_docker_time(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp())
        .filter(|t| *t > 0)
}

/// Split a raw HTTP/1.0 response into (status code, body).
pub fn split_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("malformed HTTP response (no header end)")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status_line = head.lines().next().unwrap_or("");
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("malformed HTTP status line: {status_line}"))?;
    if head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    }) {
        return Err("unexpected chunked response to an HTTP/1.0 request".into());
    }
    Ok((code, raw[split + 4..].to_vec()))
}

/// One daemon event's identity (the usage state's anchor): `timeNano` (the second's start
/// when a daemon gives none), type, action, actor id.
fn event_mark(e: &bollard::models::EventMessage) -> EventMark {
    let secs = e.time.unwrap_or(0);
    EventMark {
        time_nano: e
            .time_nano
            .unwrap_or_else(|| secs.saturating_mul(1_000_000_000)),
        what: format!(
            "{} {} {}",
            e.typ.map(|t| t.to_string()).unwrap_or_default(),
            e.action.as_deref().unwrap_or_default(),
            e.actor
                .as_ref()
                .and_then(|a| a.id.as_deref())
                .unwrap_or_default()
        ),
    }
}

/// One daemon event as the usage state reads it: a container created from an image (its
/// `image` attribute; a swarm task's container carries `com.docker.swarm.service.name`), an
/// image pulled (its actor id is the reference), or anything else.
fn usage_event(e: bollard::models::EventMessage) -> UsageEvent {
    use bollard::models::EventMessageTypeEnum as T;
    let time = e.time.unwrap_or(0);
    let action = e.action.unwrap_or_default();
    let actor = e.actor.unwrap_or_default();
    let attrs = actor.attributes.unwrap_or_default();
    match (e.typ, action.as_str()) {
        (Some(T::CONTAINER), "create") => match attrs.get("image") {
            Some(image) => UsageEvent::ContainerCreate {
                time,
                image: image.clone(),
                swarm: attrs.contains_key("com.docker.swarm.service.name"),
            },
            None => UsageEvent::Other { time },
        },
        (Some(T::IMAGE), "pull") => match actor.id {
            Some(reference) => UsageEvent::Pull { time, reference },
            None => UsageEvent::Other { time },
        },
        _ => UsageEvent::Other { time },
    }
}

/// An image inspect body (`GET /images/{id}/json`) as [`ImageState`]: every API version
/// (Docker 29 omits an empty `Parent`).
pub fn parse_image_state(body: &[u8]) -> Result<ImageState, String> {
    #[derive(Deserialize)]
    struct Inspect {
        #[serde(rename = "RepoTags", default)]
        repo_tags: Option<Vec<String>>,
        #[serde(rename = "RepoDigests", default)]
        repo_digests: Option<Vec<String>>,
        #[serde(rename = "Parent", default)]
        parent: Option<String>,
    }
    let i: Inspect = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    Ok(ImageState {
        repo_tags: i.repo_tags.unwrap_or_default(),
        repo_digests: i.repo_digests.unwrap_or_default(),
        parent: i.parent.unwrap_or_default(),
    })
}

/// Parse a raw HTTP/1.0 response of `/system/df` into build cache records.
pub fn parse_df_response(raw: &[u8]) -> Result<Vec<BuildCacheRecord>, String> {
    let (code, body) = split_response(raw)?;
    if code != 200 {
        return Err(format!(
            "HTTP {code}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    parse_df_body(&body)
}

/// Parse the JSON body of `/system/df` (legacy `BuildCache` or ≥1.52 `BuildCacheUsage.Items`).
pub fn parse_df_body(body: &[u8]) -> Result<Vec<BuildCacheRecord>, String> {
    #[derive(Deserialize)]
    struct Usage {
        #[serde(rename = "Items", default)]
        items: Option<Vec<BuildCacheRecord>>,
    }
    #[derive(Deserialize)]
    struct Df {
        #[serde(rename = "BuildCache", default)]
        build_cache: Option<Vec<BuildCacheRecord>>,
        #[serde(rename = "BuildCacheUsage", default)]
        usage: Option<Usage>,
    }
    let df: Df = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    Ok(df
        .build_cache
        .or_else(|| df.usage.and_then(|u| u.items))
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/docker-api")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// Docker 29 (API 1.52+) answers, recorded as fixtures (no such engine runs here).
    #[test]
    fn api_1_52_and_later_answers() {
        // /system/df: 1.52 sends both shapes, 1.53 only BuildCacheUsage.Items
        let both = parse_df_body(&fixture("system-df-1.52-build-cache.json")).unwrap();
        assert_eq!(both.len(), 1, "the legacy list wins while it is there");
        let new = parse_df_body(&fixture("system-df-1.53-build-cache.json")).unwrap();
        assert_eq!(new.len(), 2);
        assert!(new[1].shared && !new[0].shared);
        // image inspect without Parent
        let i = parse_image_state(&fixture("image-inspect-29.0-api1.52-containerd.json")).unwrap();
        assert_eq!(i.parent, "");
        assert!(crate::plan::is_untagged(&i.repo_tags), "{:?}", i.repo_tags);
        // events without the top-level id: the reference is Actor.ID
        let text = String::from_utf8(fixture("events-29.0-api1.52.jsonl")).unwrap();
        let events: Vec<UsageEvent> = text
            .lines()
            .map(|l| usage_event(serde_json::from_str(l).unwrap()))
            .collect();
        assert!(matches!(&events[0], UsageEvent::Pull { reference, .. }
            if reference.starts_with("127.0.0.1:5000/t/cold@sha256:")));
        assert!(
            matches!(&events[1], UsageEvent::ContainerCreate { image, swarm: true, .. }
            if image.starts_with("redis:7-alpine@sha256:"))
        );
        assert!(matches!(events[2], UsageEvent::Other { .. }));
    }

    /// The shape of `GET /services` (Engine API): `PreviousSpec` holds the rollback image.
    #[test]
    fn services_with_their_rollback_image() {
        let body = br#"[
          {"ID":"s1","Spec":{"Name":"web","Mode":{"Replicated":{"Replicas":2}},
            "TaskTemplate":{"ContainerSpec":{"Image":"app:2@sha256:bb"}}},
           "PreviousSpec":{"Name":"web","Mode":{"Replicated":{"Replicas":2}},
            "TaskTemplate":{"ContainerSpec":{"Image":"app:1@sha256:aa"}}},
           "UpdateStatus":{"State":"completed"}},
          {"ID":"s2","Spec":{"Name":"agent","Mode":{"Global":{}},
            "TaskTemplate":{"ContainerSpec":{"Image":"agent:1"}}}},
          {"ID":"s3","Spec":{"Name":"once","Mode":{"ReplicatedJob":{}}}}
        ]"#;
        let s = parse_services(body).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].mode, ServiceMode::Replicated(2));
        assert_eq!(s[0].update_state.as_deref(), Some("completed"));
        assert_eq!(
            s[0].images().collect::<Vec<_>>(),
            ["app:2@sha256:bb", "app:1@sha256:aa"]
        );
        assert_eq!(s[1].mode, ServiceMode::Global);
        assert_eq!(s[1].previous_image, None);
        assert_eq!(s[2].mode, ServiceMode::Job);
        assert_eq!(s[2].images().count(), 0);
        assert!(parse_services(b"{}").is_err());
        assert_eq!(
            error_message(503, br#"{"message":"This node is not a swarm manager."}"#),
            "This node is not a swarm manager."
        );
    }

    #[test]
    fn df_legacy_and_new_shapes() {
        let legacy = br#"{"LayersSize":0,"Images":[],"BuildCache":[{"ID":"abc","Type":"regular","InUse":false,"Shared":false,"Size":10,"CreatedAt":"2026-01-01T00:00:00Z","LastUsedAt":null}]}"#;
        let r = parse_df_body(legacy).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].id, "abc");
        assert_eq!(r[0].last_used_at, None);
        let newer = br#"{"BuildCacheUsage":{"Items":[{"ID":"x","Type":"internal","InUse":true,"Shared":true,"Size":5}]}}"#;
        let r = parse_df_body(newer).unwrap();
        assert_eq!(r[0].kind, "internal");
        assert!(parse_df_body(b"{}").unwrap().is_empty());
        assert!(parse_df_body(b"not json").is_err());
    }

    #[test]
    fn df_http_errors_are_reported() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"BuildCache\":null}";
        assert!(parse_df_response(ok).unwrap().is_empty());
        let bad = b"HTTP/1.0 500 Internal Server Error\r\n\r\n{\"message\":\"boom\"}";
        let e = parse_df_response(bad).unwrap_err();
        assert!(e.contains("500") && e.contains("boom"), "{e}");
        assert!(parse_df_response(b"garbage").is_err());
    }
}
