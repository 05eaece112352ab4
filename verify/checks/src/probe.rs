//! The probe: what a CI run does to the image cache, done once per gate run and read by
//! `cache.image-survives-teardown`, `cache.warm-redeploy-zero-layers` (decided in
//! [`crate::cache`]) and `prune.keeps-deployed-images` (decided in [`crate::prune`]). The probe
//! decides nothing: it records what it deployed, tore down, pulled and what the dry run listed,
//! with the evidence of each step.
//!
//! 1. resolve the probe image's digest the way `docker service create` does (distribution
//!    inspect) and deploy a swarm service pinned to `image@digest`, with a named volume and a
//!    secret, under a unique name; no pull by tag first, so the image ends up with no tag;
//! 2. tear it down as a CI teardown does: service, then volume and secret — never images — and
//!    the host's own extra teardown steps from the spec; when the spec gives the host's own
//!    teardown (`[params.probe] teardown`), steps 1, 2 and the redeploy are the host's instead:
//!    a compose stack deployed with the host's deploy command and torn down with its teardown;
//! 3. check the image (same id) is still in the store;
//! 4. ask the deployed prune for a dry run with every gate forced open and `--until 0s`;
//! 5. run what the spec says happens between runs, then redeploy: a pull by digest (its progress
//!    stream counts layers downloaded) and the service again, with the daemon's events recorded;
//! 6. always remove the probe's service, volume and secret, on failure too.

use crate::deployed::{self, PruneReport};
use crate::Ctx;
use bollard::models::{
    Mount, MountType, SecretSpec, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
    TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecFile, TaskSpecContainerSpecSecrets,
    TaskState, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateImageOptionsBuilder, EventsOptionsBuilder, ListContainersOptionsBuilder,
    ListTasksOptionsBuilder,
};
use bollard::Docker;
use ccci_core::{short, Evidence, Halt, Trail};
use ccci_host::docker_error::{is_conflict, is_not_found};
use futures_util::StreamExt;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// What the probe saw, step by step. `None` for a step that did not run.
#[derive(Debug, Clone)]
pub struct ProbeRun {
    /// The probe's name: the swarm service's in the verifier's own deploy, the stack's when the
    /// spec gives the host's own teardown (then the service is `<stack>_probe`).
    pub service: String,
    /// The swarm service whose task the probe watches (empty: [`Self::service`]).
    pub task_service: String,
    /// The host's own deploy and teardown are used (`[params.probe] teardown` given): where
    /// the compose file was written on the host.
    pub stack_dir: Option<String>,
    /// `image@digest` the service was pinned to.
    pub pinned: Option<String>,
    /// The image id the deployed task ran.
    pub image_id: Option<String>,
    /// Tags the image carried after the deploy (a swarm deploy adds none; a tag left by an
    /// earlier `docker pull` by tag makes the image non-dangling, a weaker test of the prune).
    /// The containerd store names a swarm pull by the digest-pinned reference it pulled
    /// (`redis:7-alpine@sha256:…`): that is no tag (the prune's rule, `plan::is_untagged`).
    /// `Err` holds why the image could not be inspected: then whether it is tagged is unknown.
    pub tags: Result<Vec<String>, String>,
    /// Containers (other than the probe's, which the teardown removed) that use the probe's
    /// image around the dry run, as `name (id, state)`: a prune never removes an image a
    /// container uses, so with one there the dry run not listing the image shows nothing.
    /// `Err` holds why the containers could not be listed.
    pub image_users: Result<Vec<String>, String>,
    /// After teardown: the id found in the store (None = gone).
    pub after_teardown: Option<Option<String>>,
    /// The deployed prune's dry run (every gate forced open): its report, which lists the
    /// images it would remove.
    pub dry_run: Option<PruneReport>,
    /// The warm pull: layers downloaded (ids) and layers found locally.
    pub warm_pull: Option<PullStats>,
    /// Pull events of the probe's image (its digest) the daemon reported from the warm pull to
    /// the converged redeploy, the warm pull's own event included (so a right host shows
    /// exactly 1; 0 means the window missed the events and nothing was shown). Pulls of other
    /// images (a CI host keeps working) are listed in the evidence and not counted.
    pub redeploy_pull_events: Option<usize>,
    /// The redeploy converged, and ran this image id.
    pub redeploy_image_id: Option<String>,
    /// A step that could not be done (an error, not a verdict), with which step.
    pub error: Option<String>,
    /// When the probe's budget ends (the verifier's clock; every wait is bounded by it).
    pub deadline: Option<Instant>,
    /// Labels every probe object carries: [`LABEL`], the stack namespace, [`LABEL_DEADLINE`].
    pub labels: HashMap<String, String>,
    /// The evidence of every step, in order.
    pub trail: Trail,
}

impl ProbeRun {
    /// The swarm service whose task the probe deploys and watches.
    pub fn task_service(&self) -> &str {
        if self.task_service.is_empty() {
            &self.service
        } else {
            &self.task_service
        }
    }
}

impl Default for ProbeRun {
    fn default() -> Self {
        ProbeRun {
            service: String::new(),
            task_service: String::new(),
            stack_dir: None,
            pinned: None,
            image_id: None,
            tags: Err("the image was not inspected".into()),
            image_users: Err("the containers were not listed".into()),
            after_teardown: None,
            dry_run: None,
            warm_pull: None,
            redeploy_pull_events: None,
            redeploy_image_id: None,
            error: None,
            deadline: None,
            labels: HashMap::new(),
            trail: Trail::default(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct PullStats {
    pub downloaded: BTreeSet<String>,
    pub already: BTreeSet<String>,
    pub final_status: String,
}

/// Count layers in a pull progress stream: a layer whose status reached `Pull complete` or
/// `Download complete` (or started `Downloading`) was fetched; `Already exists` was not.
pub fn count_layers(events: &[(Option<String>, String)]) -> PullStats {
    let mut s = PullStats::default();
    for (id, status) in events {
        match id {
            Some(id)
                if status.starts_with("Pull complete")
                    || status.starts_with("Download complete")
                    || status.starts_with("Downloading")
                    || status.starts_with("Extracting") =>
            {
                s.downloaded.insert(id.clone());
            }
            Some(id) if status.starts_with("Already exists") => {
                s.already.insert(id.clone());
            }
            None if status.starts_with("Status:") => s.final_status = status.clone(),
            _ => {}
        }
    }
    s
}

/// The probe run of this gate run (run on first use, then shared). A probe that an earlier
/// check started and that was cancelled (its check timed out) is not started again: its
/// objects were cleaned up, and the checks that read it get an error.
pub async fn get(ctx: &Ctx) -> &ProbeRun {
    ctx.probe
        .get_or_init(|| async {
            if ctx.probe_started.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return ProbeRun {
                    error: Some(
                        "an earlier check's probe was cancelled (its timeout in the gate spec is shorter than the probe's budget); its objects were removed, the probe is not run twice".into(),
                    ),
                    ..Default::default()
                };
            }
            run(ctx).await
        })
        .await
}

/// The label every probe object carries (service, volume, secret).
pub const LABEL: &str = "ccci.probe";
/// The label holding the daemon time (Unix seconds) after which a probe object is a leftover:
/// its run's budget and clean-up time are over.
pub const LABEL_DEADLINE: &str = "ccci.probe.deadline";
/// How long the clean-up of a probe may take, on top of its budget.
pub const CLEANUP_SECS: u64 = 30;

/// Removes the probe's objects if the probe is dropped before it cleaned up (its check timed
/// out, a panic, the gate interrupted): the clean-up is spawned and the gate run waits for it.
struct Guard {
    docker: Docker,
    service: String,
    task_service: String,
    cleanups: crate::Cleanups,
    armed: bool,
}

impl Guard {
    fn new(docker: &Docker, p: &ProbeRun, cleanups: &crate::Cleanups) -> Guard {
        cleanups.enter();
        Guard {
            docker: docker.clone(),
            service: p.service.clone(),
            task_service: p.task_service.clone(),
            cleanups: cleanups.clone(),
            armed: true,
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.armed {
            let docker = self.docker.clone();
            let service = self.service.clone();
            let task_service = self.task_service.clone();
            self.cleanups.spawn(async move {
                let mut p = ProbeRun {
                    service,
                    task_service,
                    ..Default::default()
                };
                cleanup(&docker, &mut p).await;
            });
        }
        self.cleanups.leave();
    }
}

/// Remove the probe objects of earlier runs whose deadline has passed (a run that was killed
/// before it could clean up). Objects of a run still within its budget are left alone.
async fn sweep(docker: &Docker, now: i64, t: &mut Trail) -> Result<(), Halt> {
    let mut filters = HashMap::new();
    filters.insert("label", vec![LABEL]);
    let stale = |labels: Option<&HashMap<String, String>>| {
        labels
            .and_then(|l| l.get(LABEL_DEADLINE))
            .and_then(|d| d.parse::<i64>().ok())
            .is_none_or(|d| d < now)
    };
    let mut services = Vec::new();
    for s in docker
        .list_services(Some(
            bollard::query_parameters::ListServicesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(|e| Halt::error(format!("GET /services?label={LABEL}: {e}")))?
    {
        let spec = s.spec.unwrap_or_default();
        if stale(spec.labels.as_ref()) {
            services.push(spec.name.unwrap_or_default());
        }
    }
    let mut names: BTreeSet<String> = services.iter().cloned().collect();
    let volumes = docker
        .list_volumes(Some(
            bollard::query_parameters::ListVolumesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(|e| Halt::error(format!("GET /volumes?label={LABEL}: {e}")))?;
    for v in volumes.volumes.unwrap_or_default() {
        if stale(Some(&v.labels)) {
            if let Some(svc) = v.name.strip_suffix("_data") {
                names.insert(svc.to_string());
            }
        }
    }
    let secrets = docker
        .list_secrets(Some(
            bollard::query_parameters::ListSecretsOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(|e| Halt::error(format!("GET /secrets?label={LABEL}: {e}")))?;
    for sec in secrets {
        let spec = sec.spec.unwrap_or_default();
        if stale(spec.labels.as_ref()) {
            if let Some(svc) = spec.name.as_deref().and_then(|n| n.strip_suffix("_secret")) {
                names.insert(svc.to_string());
            }
        }
    }
    if names.is_empty() {
        return Ok(());
    }
    let mut out = Vec::new();
    for svc in &names {
        let mut p = ProbeRun {
            service: svc.clone(),
            ..Default::default()
        };
        cleanup(docker, &mut p).await;
        out.extend(p.trail.take().into_iter().map(|e| e.output));
    }
    t.api(
        format!("sweep: probe objects of earlier runs past their deadline (label {LABEL})"),
        format!(
            "{}: {}",
            names.iter().cloned().collect::<Vec<_>>().join(", "),
            out.join("; ")
        ),
    );
    Ok(())
}

fn unique_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "ccci-probe-{:06x}{:04x}",
        (nanos / 1000) as u64 & 0xff_ffff,
        std::process::id() & 0xffff
    )
}

async fn run(ctx: &Ctx) -> ProbeRun {
    let mut p = ProbeRun {
        service: unique_name(),
        ..Default::default()
    };
    let docker = match ctx.target.docker().await {
        Ok(d) => d,
        Err(e) => {
            p.error = Some(format!("connect to the target's Docker: {e}"));
            return p;
        }
    };
    let budget = ctx.params.probe.budget_secs;
    p.deadline = Some(Instant::now() + Duration::from_secs(budget));
    let res = async {
        let now = daemon_now(&docker).await?;
        p.labels.insert(
            LABEL_DEADLINE.to_string(),
            (now + (budget + CLEANUP_SECS) as i64).to_string(),
        );
        sweep(&docker, now, &mut p.trail).await?;
        if !ctx.params.probe.teardown.is_empty() {
            p.task_service = format!("{}_{STACK_SERVICE}", p.service);
        }
        let mut guard = Guard::new(&docker, &p, &ctx.cleanups);
        let res = steps(ctx, &docker, &mut p).await;
        cleanup(&docker, &mut p).await;
        if let Some(dir) = p.stack_dir.clone() {
            let mut t = Trail::new();
            let _ = ctx.cmd(&mut t, &["rm", "-rf", "--", &dir]).await;
            for ev in t.take() {
                p.trail.push(ev);
            }
        }
        guard.armed = false;
        res
    }
    .await;
    if let Err(h) = res {
        p.error = Some(h.detail);
    }
    p
}

/// What is left of the probe's budget, at most `want`; an error naming `step` when nothing is.
fn budget_for(p: &ProbeRun, want: Duration, step: &str) -> Result<Duration, Halt> {
    let Some(deadline) = p.deadline else {
        return Ok(want);
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Halt::error(format!(
            "the probe's budget (probe.budget_secs) was spent before {step}"
        )));
    }
    Ok(want.min(left))
}

fn secret_name(service: &str) -> String {
    format!("{service}_secret")
}
fn volume_name(service: &str) -> String {
    format!("{service}_data")
}

async fn deploy(docker: &Docker, p: &mut ProbeRun, pinned: &str) -> Result<(), Halt> {
    let svc = p.service.clone();
    let mut labels = p.labels.clone();
    labels.insert("com.docker.stack.namespace".to_string(), svc.clone());
    labels.insert(LABEL.to_string(), "1".to_string());
    // the secret and volume a CI stack has (created once; a redeploy reuses the names)
    let secret = secret_name(&svc);
    let secret_id = match docker.inspect_secret(&secret).await {
        Ok(s) => s.id.unwrap_or_default(),
        Err(_) => {
            let r = docker
                .create_secret(SecretSpec {
                    name: Some(secret.clone()),
                    labels: Some(labels.clone()),
                    // base64 of "probe"; not a secret of anyone's
                    data: Some("cHJvYmU=".into()),
                    ..Default::default()
                })
                .await
                .map_err(|e| Halt::error(format!("POST /secrets/create {secret}: {e}")))?;
            r.id
        }
    };
    let vol = volume_name(&svc);
    docker
        .create_volume(VolumeCreateRequest {
            name: Some(vol.clone()),
            labels: Some(labels.clone()),
            ..Default::default()
        })
        .await
        .map_err(|e| Halt::error(format!("POST /volumes/create {vol}: {e}")))?;
    let spec = ServiceSpec {
        name: Some(svc.clone()),
        labels: Some(labels),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..Default::default()
        }),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(pinned.to_string()),
                mounts: Some(vec![Mount {
                    target: Some("/data".into()),
                    source: Some(vol.clone()),
                    typ: Some(MountType::VOLUME),
                    ..Default::default()
                }]),
                secrets: Some(vec![TaskSpecContainerSpecSecrets {
                    file: Some(TaskSpecContainerSpecFile {
                        name: Some("probe".into()),
                        uid: Some("0".into()),
                        gid: Some("0".into()),
                        mode: Some(0o400),
                    }),
                    secret_id: Some(secret_id),
                    secret_name: Some(secret),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let r = docker
        .create_service(spec, None)
        .await
        .map_err(|e| Halt::error(format!("POST /services/create {svc} image={pinned}: {e}")))?;
    p.trail.push(Evidence::api(
        format!(
            "POST /services/create name={svc} image={pinned} replicas=1 (+ volume {vol}, secret)"
        ),
        format!("service id {}", r.id.unwrap_or_default()),
    ));
    Ok(())
}

/// Wait until the service has a running task; return the image id its container runs.
async fn wait_running(docker: &Docker, p: &mut ProbeRun, secs: u64) -> Result<String, Halt> {
    let limit = budget_for(p, Duration::from_secs(secs), "the service converged")?;
    let secs = limit.as_secs().max(1);
    let svc = p.task_service().to_string();
    let deadline = Instant::now() + limit;
    let mut filters = HashMap::new();
    filters.insert("service", vec![svc.as_str()]);
    loop {
        let tasks = docker
            .list_tasks(Some(
                ListTasksOptionsBuilder::default().filters(&filters).build(),
            ))
            .await
            .map_err(|e| Halt::error(format!("GET /tasks?service={svc}: {e}")))?;
        let mut states = Vec::new();
        for t in &tasks {
            let st = t.status.as_ref();
            let state = st
                .and_then(|s| s.state)
                .map(|s| s.to_string())
                .unwrap_or_default();
            let msg = st
                .map(|s| {
                    format!(
                        "{} {}",
                        s.message.clone().unwrap_or_default(),
                        s.err.clone().unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            states.push(format!("{state}: {}", msg.trim()));
            if st.and_then(|s| s.state) == Some(TaskState::RUNNING) {
                if let Some(cid) = st
                    .and_then(|s| s.container_status.as_ref())
                    .and_then(|c| c.container_id.clone())
                {
                    let c = docker
                        .inspect_container(&cid, None)
                        .await
                        .map_err(|e| Halt::error(format!("GET /containers/{cid}/json: {e}")))?;
                    let image = c.image.unwrap_or_default();
                    p.trail.push(Evidence::api(
                        format!(
                            "GET /tasks?service={svc}; GET /containers/{}/json",
                            &cid[..12.min(cid.len())]
                        ),
                        format!("1/1 running; container image {image}"),
                    ));
                    return Ok(image);
                }
            }
        }
        let last = states.join("; ");
        if Instant::now() >= deadline {
            p.trail.push(Evidence::api(
                format!("GET /tasks?service={svc}"),
                last.clone(),
            ));
            return Err(Halt::error(format!(
                "{svc} did not converge to 1/1 within {secs}s: {last}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Remove the service (as a teardown does) and wait, at most `limit`, until its containers
/// are gone.
async fn remove_service(docker: &Docker, svc: &str, limit: Duration) -> Result<(), Halt> {
    match docker.delete_service(svc).await {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(Halt::error(format!("DELETE /services/{svc}: {e}"))),
    }
    containers_gone(docker, svc, limit).await
}

/// Wait, at most `limit`, until no container of service `svc` is left.
async fn containers_gone(docker: &Docker, svc: &str, limit: Duration) -> Result<(), Halt> {
    let mut filters = HashMap::new();
    let label = format!("com.docker.swarm.service.name={svc}");
    filters.insert("label", vec![label.as_str()]);
    let deadline = Instant::now() + limit;
    loop {
        let cs = docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(|e| Halt::error(format!("GET /containers/json: {e}")))?;
        if cs.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Halt::error(format!(
                "{} container(s) of {svc} still there {}s after removal",
                cs.len(),
                limit.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Remove the probe's volume (retrying, at most `limit`, while a container still mounts it)
/// and its secret; the errors, if any.
async fn remove_volume_and_secret(docker: &Docker, svc: &str, limit: Duration) -> Vec<String> {
    let mut errs = Vec::new();
    let vol = volume_name(svc);
    let deadline = Instant::now() + limit;
    loop {
        match docker
            .remove_volume(&vol, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
        {
            Ok(()) => break,
            Err(e) if is_not_found(&e) => break,
            // 409: a container of the service still mounts it; it goes in a moment
            Err(e) if Instant::now() < deadline && is_conflict(&e) => {
                tokio::time::sleep(Duration::from_millis(300)).await
            }
            Err(e) => {
                errs.push(format!("DELETE /volumes/{vol}: {e}"));
                break;
            }
        }
    }
    let sec = secret_name(svc);
    match docker.delete_secret(&sec).await {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => errs.push(format!("DELETE /secrets/{sec}: {e}")),
    }
    errs
}

/// The probe's values in a host command: `{service}` (the swarm service), `{stack}` (the
/// probe's name: its stack when the host's own deploy is used), `{compose}` (the compose file
/// written on the host, empty otherwise), `{image_id}`, `{image}` (the pinned reference).
fn substitute(argv: &[String], p: &ProbeRun) -> Vec<String> {
    let compose = p
        .stack_dir
        .as_deref()
        .map(|d| format!("{d}/{COMPOSE_FILE}"))
        .unwrap_or_default();
    let image_id = p.image_id.clone().unwrap_or_default();
    let image = p.pinned.clone().unwrap_or_default();
    argv.iter()
        .map(|a| {
            a.replace("{service}", p.task_service())
                .replace("{stack}", &p.service)
                .replace("{compose}", &compose)
                .replace("{image_id}", &image_id)
                .replace("{image}", &image)
        })
        .collect()
}

async fn run_hooks(
    ctx: &Ctx,
    p: &mut ProbeRun,
    hooks: &[Vec<String>],
    what: &str,
) -> Result<(), Halt> {
    for h in hooks {
        if h.is_empty() {
            continue;
        }
        let argv = substitute(h, p);
        // recorded under the step's name: `(teardown) …`, `(between runs) …`
        let mut step = Trail::new();
        let out = ctx.cmd_owned(&mut step, &argv).await;
        for ev in step.take() {
            p.trail.push(Evidence::new(
                format!("({what}) {}", ev.command),
                ev.exit,
                ev.output,
            ));
        }
        match out {
            Ok(o) if o.ok() => {}
            Ok(o) => {
                return Err(Halt::error(format!(
                    "{what} step `{}` exited {}",
                    argv.join(" "),
                    o.status
                )))
            }
            Err(_) => {
                return Err(Halt::error(format!(
                    "{what} step `{}` could not run",
                    argv.join(" ")
                )))
            }
        }
    }
    Ok(())
}

async fn image_present(docker: &Docker, id: &str) -> Result<Option<String>, Halt> {
    match docker.inspect_image(id).await {
        Ok(i) => Ok(i.id),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(Halt::error(format!("GET /images/{id}/json: {e}"))),
    }
}

/// The service's name in the probe's compose file: the stack's service is `<stack>_probe`.
pub const STACK_SERVICE: &str = "probe";
/// The compose file's name in the probe's directory on the host.
pub const COMPOSE_FILE: &str = "compose.yml";

/// The compose file of the probe's stack, for the host's own deploy: the pinned image, a named
/// volume and a secret, as a CI stack has them, every object labelled as the probe's (JSON is
/// YAML, so it is written as JSON).
pub fn compose_file(pinned: &str, labels: &HashMap<String, String>) -> String {
    let mut labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    labels.insert(LABEL.to_string(), "1".into());
    let labels = serde_json::Value::Object(labels);
    serde_json::json!({
        "version": "3.8",
        "services": {
            STACK_SERVICE: {
                "image": pinned,
                "volumes": ["data:/data"],
                "secrets": [{"source": "secret", "target": "probe", "mode": 0o400}],
                "deploy": {"replicas": 1, "labels": labels.clone()},
            }
        },
        "volumes": {"data": {"labels": labels.clone()}},
        "secrets": {"secret": {"file": "./probe.secret", "labels": labels}},
    })
    .to_string()
}

/// Write the probe's compose file (and its secret's file) into a new directory on the host.
async fn write_compose(ctx: &Ctx, p: &mut ProbeRun, pinned: &str) -> Result<(), Halt> {
    let mut t = Trail::new();
    let out = ctx
        .cmd(&mut t, &["mktemp", "-d", "/tmp/ccci-probe-XXXXXX"])
        .await?;
    let dir = out.stdout_str().trim().to_string();
    if !out.ok() || !dir.starts_with('/') {
        for ev in t.take() {
            p.trail.push(ev);
        }
        return Err(Halt::error(
            "cannot make a directory for the probe's compose file on the host (`mktemp -d`)",
        ));
    }
    p.stack_dir = Some(dir.clone());
    let compose = compose_file(pinned, &p.labels);
    let out = ctx
        .cmd(
            &mut t,
            &[
                "sh",
                "-c",
                "umask 077 && printf %s \"$2\" > \"$1/compose.yml\" && printf probe > \"$1/probe.secret\"",
                "sh",
                &dir,
                &compose,
            ],
        )
        .await;
    for ev in t.take() {
        p.trail.push(ev);
    }
    match out {
        Ok(o) if o.ok() => Ok(()),
        _ => Err(Halt::error(format!(
            "cannot write the probe's compose file to {dir}/{COMPOSE_FILE} on the host"
        ))),
    }
}

/// The containers (any state) whose image is `id`, as `name (short id, state)`; an error
/// when they cannot be listed.
async fn containers_using(docker: &Docker, id: &str) -> Result<Vec<String>, String> {
    let list = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default().all(true).build(),
        ))
        .await
        .map_err(|e| format!("GET /containers/json?all=1: {e}"))?;
    Ok(list
        .into_iter()
        .filter(|c| c.image_id.as_deref().is_some_and(|i| same_id(i, id)))
        .map(|c| {
            let name = c
                .names
                .unwrap_or_default()
                .first()
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default();
            format!(
                "{name} ({}, {})",
                short(c.id.as_deref().unwrap_or_default()),
                c.state.map(|s| s.to_string()).unwrap_or_default()
            )
        })
        .collect())
}

/// The deployed prune's dry run with every gate forced open; what it lists is recorded.
async fn dry_run(ctx: &Ctx, p: &mut ProbeRun) -> Result<(), Halt> {
    let argv = deployed::argv(ctx, &mut p.trail)
        .await
        .map_err(|h| Halt::error(format!("cannot read the deployed prune: {}", h.detail)))?;
    let argv = deployed::forced_open_argv(&argv);
    p.dry_run = Some(deployed::run_json_as_unit(ctx, &mut p.trail, &argv).await?);
    Ok(())
}

/// The daemon's clock (`GET /info` SystemTime), in Unix seconds.
async fn daemon_now(docker: &Docker) -> Result<i64, Halt> {
    let info = docker
        .info()
        .await
        .map_err(|e| Halt::error(format!("GET /info: {e}")))?;
    let t = info.system_time.unwrap_or_default();
    chrono::DateTime::parse_from_rfc3339(&t)
        .map(|d| d.timestamp())
        .map_err(|e| Halt::error(format!("GET /info: SystemTime {t:?} is not a time: {e}")))
}

/// The repository of an image reference without its tag or digest: `redis:7-alpine` →
/// `redis`, `localhost:5000/redis@sha256:…` → `localhost:5000/redis` (a `:` before the last
/// `/` is a registry port, not a tag).
pub fn repository_of(reference: &str) -> &str {
    let name = reference
        .split_once('@')
        .map(|(n, _)| n)
        .unwrap_or(reference);
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    }
}

async fn warm_pull(docker: &Docker, p: &mut ProbeRun, pinned: &str) -> Result<(), Halt> {
    let digest = pinned
        .split_once('@')
        .map(|(_, d)| d)
        .ok_or_else(|| Halt::error(format!("{pinned} is not pinned by digest")))?;
    let repo = repository_of(pinned);
    let opts = CreateImageOptionsBuilder::default()
        .from_image(repo)
        .tag(digest)
        .build();
    let mut stream = docker.create_image(Some(opts), None, None);
    let mut events = Vec::new();
    let mut lines = Vec::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| {
            Halt::error(format!(
                "POST /images/create?fromImage={repo}&tag={digest}: {e}"
            ))
        })?;
        let status = info.status.clone().unwrap_or_default();
        if !status.starts_with("Downloading") && !status.starts_with("Extracting") {
            lines.push(format!(
                "{}{}",
                info.id
                    .as_deref()
                    .map(|i| format!("{i}: "))
                    .unwrap_or_default(),
                status
            ));
        }
        events.push((info.id.clone(), status));
    }
    let stats = count_layers(&events);
    p.trail.push(Evidence::api(
        format!("POST /images/create?fromImage={repo}&tag={digest} (warm pull, progress stream)"),
        format!(
            "{}\n=> layers downloaded: {}; already present: {}",
            lines.join("\n"),
            stats.downloaded.len(),
            stats.already.len()
        ),
    ));
    p.warm_pull = Some(stats);
    Ok(())
}

async fn steps(ctx: &Ctx, docker: &Docker, p: &mut ProbeRun) -> Result<(), Halt> {
    let image = ctx.params.probe.image.clone();
    let secs = ctx.params.probe.converge_secs;
    // 1. pin by digest, as `docker service create` does, and deploy
    let dist = docker
        .inspect_registry_image(&image, None)
        .await
        .map_err(|e| Halt::error(format!("GET /distribution/{image}/json: {e}")))?;
    let digest = dist.descriptor.digest.clone().unwrap_or_default();
    if digest.is_empty() {
        return Err(Halt::error(format!(
            "the registry returned no digest for {image}"
        )));
    }
    let pinned = format!("{image}@{digest}");
    p.trail.push(Evidence::api(
        format!("GET /distribution/{image}/json"),
        format!("digest {digest}"),
    ));
    p.pinned = Some(pinned.clone());
    let host_teardown = ctx.params.probe.teardown.clone();
    if host_teardown.is_empty() {
        deploy(docker, p, &pinned).await?;
    } else {
        write_compose(ctx, p, &pinned).await?;
        let hooks = ctx.params.probe.deploy.clone();
        run_hooks(ctx, p, &hooks, "deploy").await?;
    }
    let id = wait_running(docker, p, secs).await?;
    p.image_id = Some(id.clone());
    // how the deploy left the image: a swarm deploy pins by digest and adds no tag; an image
    // that cannot be inspected leaves that unknown (an error of the check that needs it)
    match docker.inspect_image(&id).await {
        Ok(img) => {
            p.tags = Ok(img
                .repo_tags
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|t| !ci_docker_prune::plan::is_untagged(std::slice::from_ref(t)))
                .collect());
            p.trail.push(Evidence::api(
                format!("GET /images/{}/json (after deploy)", short(&id)),
                format!(
                    "RepoTags={:?} RepoDigests={:?}",
                    img.repo_tags.unwrap_or_default(),
                    img.repo_digests.unwrap_or_default()
                ),
            ));
        }
        Err(e) => {
            let why = format!("GET /images/{id}/json (after deploy): {e}");
            p.trail.push(Evidence::api(
                format!("GET /images/{}/json (after deploy)", short(&id)),
                why.clone(),
            ));
            p.tags = Err(why);
        }
    }
    // 2. teardown: the host's own (the command its CI runs), or the verifier's — service,
    // volume, secret, as a CI teardown does; then the host's own extra steps
    if host_teardown.is_empty() {
        p.trail.note(
            "teardown",
            "the verifier's own (no [params.probe] teardown given): DELETE the service, its volume and its secret through the API, never an image",
        );
        let limit = budget_for(p, Duration::from_secs(60), "the teardown")?;
        remove_service(docker, &p.service, limit).await?;
        let limit = budget_for(p, Duration::from_secs(20), "the teardown")?;
        let errs = remove_volume_and_secret(docker, &p.service, limit).await;
        p.trail.push(Evidence::api(
            format!(
                "DELETE /services/{0}; DELETE /volumes/{0}_data; DELETE /secrets/{0}_secret (teardown)",
                p.service
            ),
            if errs.is_empty() {
                "removed; no image removed".to_string()
            } else {
                errs.join("\n")
            },
        ));
    } else {
        p.trail.note(
            "teardown",
            format!(
                "the host's own ([params.probe] teardown): {}",
                host_teardown
                    .iter()
                    .map(|h| substitute(h, p).join(" "))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        );
        run_hooks(ctx, p, &host_teardown, "teardown").await?;
        // a `docker stack rm` returns before the task's container is gone
        let limit = budget_for(p, Duration::from_secs(60), "the teardown")?;
        let svc = p.task_service().to_string();
        containers_gone(docker, &svc, limit)
            .await
            .map_err(|h| Halt::error(format!("after the host's teardown: {}", h.detail)))?;
    }
    let hooks = ctx.params.probe.teardown_extra.clone();
    run_hooks(ctx, p, &hooks, "teardown").await?;
    // 3. the image is still there
    let found = image_present(docker, &id).await?;
    p.trail.push(Evidence::api(
        format!("GET /images/{id}/json (after teardown)"),
        match &found {
            Some(f) => format!("present: {f}"),
            None => "No such image".to_string(),
        },
    ));
    p.after_teardown = Some(found);
    // 4. the deployed prune, every gate forced open; the containers that use the image are
    // listed right before and right after it (a prune keeps an image a container uses, so
    // the dry run shows the prune's choice only when there is none)
    let before = containers_using(docker, &id).await;
    if let Err(h) = dry_run(ctx, p).await {
        p.trail.note("dry run", h.detail);
    }
    let after = containers_using(docker, &id).await;
    p.image_users = match (before, after) {
        (Ok(mut a), Ok(b)) => {
            for u in b {
                if !a.contains(&u) {
                    a.push(u);
                }
            }
            Ok(a)
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    p.trail.push(Evidence::api(
        format!(
            "GET /containers/json?all=1 (before and after the dry run: containers using image {})",
            short(&id)
        ),
        match &p.image_users {
            Ok(u) if u.is_empty() => "none".to_string(),
            Ok(u) => u.join("\n"),
            Err(e) => e.clone(),
        },
    ));
    // 5. between runs, then redeploy
    let hooks = ctx.params.probe.before_redeploy.clone();
    run_hooks(ctx, p, &hooks, "between runs").await?;
    // the event window in the daemon's own clock, not the verifier's (they may be skewed)
    let since = daemon_now(docker).await? - 1;
    warm_pull(docker, p, &pinned).await?;
    if host_teardown.is_empty() {
        deploy(docker, p, &pinned).await?;
    } else {
        let hooks = ctx.params.probe.deploy.clone();
        run_hooks(ctx, p, &hooks, "redeploy").await?;
    }
    let id2 = wait_running(docker, p, secs).await?;
    p.redeploy_image_id = Some(id2);
    let until = daemon_now(docker).await? + 1;
    let mut filters = HashMap::new();
    filters.insert("type", vec!["image"]);
    filters.insert("event", vec!["pull"]);
    let opts = EventsOptionsBuilder::default()
        .since(&since.to_string())
        .until(&until.to_string())
        .filters(&filters)
        .build();
    let mut events = docker.events(Some(opts));
    let mut actors = Vec::new();
    while let Some(ev) = events.next().await {
        let ev = ev.map_err(|e| Halt::error(format!("GET /events: {e}")))?;
        let actor = ev.actor.and_then(|a| a.id).unwrap_or_default();
        actors.push((ev.action.unwrap_or_default(), actor));
    }
    // a CI host keeps working: only pulls of the probe's image (its digest) are the probe's
    let (ours, others) = probe_pulls(&actors, &pinned);
    let mut out = if ours.is_empty() {
        "(no pull event of the probe's image)".to_string()
    } else {
        ours.join("\n")
    };
    if !others.is_empty() {
        let names: BTreeSet<&str> = others.iter().map(|(_, a)| a.as_str()).collect();
        out.push_str(&format!(
            "\n=> not counted: {} pull event(s) of other images ({})",
            others.len(),
            names.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    p.trail.push(Evidence::api(
        format!("GET /events?since={since}&until={until}&filters={{type:image,event:pull}}"),
        out,
    ));
    // our own warm pull by digest is one pull event; anything beyond it is the redeploy pulling
    p.redeploy_pull_events = Some(ours.len());
    Ok(())
}

/// Split pull events (action, actor) into the probe's — a pull of the image it pinned, by
/// that digest — rendered `action actor`, and everyone else's.
pub fn probe_pulls(
    events: &[(String, String)],
    pinned: &str,
) -> (Vec<String>, Vec<(String, String)>) {
    let digest = pinned.split_once('@').map(|(_, d)| d).unwrap_or(pinned);
    let mut ours = Vec::new();
    let mut others = Vec::new();
    for (action, actor) in events {
        if actor.ends_with(&format!("@{digest}")) {
            ours.push(format!("{action} {actor}"));
        } else {
            others.push((action.clone(), actor.clone()));
        }
    }
    (ours, others)
}

async fn cleanup(docker: &Docker, p: &mut ProbeRun) {
    let mut errs = Vec::new();
    // the clean-up has its own time, after the budget: CLEANUP_SECS in all
    let third = Duration::from_secs(CLEANUP_SECS / 3);
    let mut services = vec![p.service.clone()];
    if p.task_service() != p.service {
        services.push(p.task_service().to_string());
    }
    for svc in &services {
        if let Err(h) = remove_service(docker, svc, third).await {
            errs.push(h.detail);
        }
    }
    errs.extend(remove_volume_and_secret(docker, &p.service, third).await);
    // a stack's network (the host's own deploy makes one; absent otherwise)
    let net = format!("{}_default", p.service);
    match docker.remove_network(&net).await {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => errs.push(format!("DELETE /networks/{net}: {e}")),
    }
    p.trail.push(Evidence::api(
        format!("cleanup of {}", p.service),
        if errs.is_empty() {
            "probe service, volume, secret (and stack network) removed".into()
        } else {
            errs.join("\n")
        },
    ));
}

/// Two image ids name the same image (with or without the `sha256:` prefix).
pub fn same_id(a: &str, b: &str) -> bool {
    a.strip_prefix("sha256:").unwrap_or(a) == b.strip_prefix("sha256:").unwrap_or(b)
}

/// A probe run as the decision tests need it: deployed image `sha256:aaaa`, what the store
/// held after the teardown, and the images a dry run listed.
#[cfg(test)]
pub(crate) fn sample(after: Option<Option<&str>>, dry: Option<Vec<&str>>) -> ProbeRun {
    ProbeRun {
        service: "p".into(),
        pinned: Some("redis:7-alpine@sha256:d".into()),
        image_id: Some("sha256:aaaa".into()),
        tags: Ok(vec![]),
        image_users: Ok(vec![]),
        after_teardown: after.map(|a| a.map(String::from)),
        dry_run: dry.map(|v| PruneReport {
            version: 1,
            outcome: "dry-run".into(),
            skipped_by: None,
            gates: vec![],
            removed: crate::deployed::RemovedJson {
                images: v.into_iter().map(String::from).collect(),
                ..Default::default()
            },
            reclaimed_bytes: 0,
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_of_references() {
        assert_eq!(repository_of("redis:7-alpine@sha256:abc"), "redis");
        assert_eq!(repository_of("redis@sha256:abc"), "redis");
        assert_eq!(
            repository_of("localhost:5000/redis@sha256:abc"),
            "localhost:5000/redis"
        );
        assert_eq!(
            repository_of("localhost:5000/redis:7@sha256:abc"),
            "localhost:5000/redis"
        );
        assert_eq!(
            repository_of("localhost:5000/redis"),
            "localhost:5000/redis"
        );
    }

    #[test]
    fn the_probes_compose_file() {
        let labels: HashMap<String, String> =
            [(LABEL_DEADLINE.to_string(), "123".to_string())].into();
        let text = compose_file("redis:7-alpine@sha256:d1", &labels);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let svc = &v["services"]["probe"];
        assert_eq!(svc["image"], "redis:7-alpine@sha256:d1");
        assert_eq!(svc["volumes"][0], "data:/data");
        assert_eq!(svc["secrets"][0]["mode"], 256);
        for labels in [
            &svc["deploy"]["labels"],
            &v["volumes"]["data"]["labels"],
            &v["secrets"]["secret"]["labels"],
        ] {
            assert_eq!(labels[LABEL], "1");
            assert_eq!(labels[LABEL_DEADLINE], "123");
        }
    }

    #[test]
    fn host_commands_get_the_probes_values() {
        let mut p = ProbeRun {
            service: "ccci-probe-1".into(),
            pinned: Some("redis@sha256:d1".into()),
            image_id: Some("sha256:aa".into()),
            ..Default::default()
        };
        let argv: Vec<String> = [
            "x",
            "{stack}",
            "{service}",
            "{compose}",
            "{image}",
            "{image_id}",
        ]
        .map(String::from)
        .to_vec();
        // the verifier's own deploy: the service is the probe's name, no compose file
        assert_eq!(
            substitute(&argv, &p),
            [
                "x",
                "ccci-probe-1",
                "ccci-probe-1",
                "",
                "redis@sha256:d1",
                "sha256:aa"
            ]
        );
        // the host's own deploy: a stack, its service `<stack>_probe`
        p.task_service = "ccci-probe-1_probe".into();
        p.stack_dir = Some("/tmp/d".into());
        assert_eq!(
            substitute(&argv, &p),
            [
                "x",
                "ccci-probe-1",
                "ccci-probe-1_probe",
                "/tmp/d/compose.yml",
                "redis@sha256:d1",
                "sha256:aa"
            ]
        );
    }

    #[test]
    fn only_pulls_of_the_probes_digest_are_the_probes() {
        let ev = |a: &str| ("pull".to_string(), a.to_string());
        let events = vec![
            ev("redis@sha256:d1"),
            ev("127.0.0.1:5000/ci/app:1"),
            ev("docker.io/library/redis:7-alpine@sha256:d1"),
            // the same repository at another digest, or by tag: not the probe's pull
            ev("redis@sha256:d2"),
            ev("redis:7-alpine"),
        ];
        let (ours, others) = probe_pulls(&events, "redis:7-alpine@sha256:d1");
        assert_eq!(
            ours,
            vec![
                "pull redis@sha256:d1",
                "pull docker.io/library/redis:7-alpine@sha256:d1"
            ]
        );
        assert_eq!(others.len(), 3);
    }

    #[test]
    fn counts_layers_from_a_pull_stream() {
        let ev = |id: Option<&str>, s: &str| (id.map(String::from), s.to_string());
        let cold = vec![
            ev(None, "Pulling from library/redis"),
            ev(Some("a"), "Pulling fs layer"),
            ev(Some("a"), "Downloading"),
            ev(Some("a"), "Pull complete"),
            ev(Some("b"), "Already exists"),
            ev(Some("c"), "Download complete"),
            ev(None, "Status: Downloaded newer image for redis@sha256:x"),
        ];
        let s = count_layers(&cold);
        assert_eq!(s.downloaded.len(), 2);
        assert_eq!(s.already.len(), 1);
        let warm = vec![
            ev(None, "Digest: sha256:x"),
            ev(None, "Status: Image is up to date for redis@sha256:x"),
        ];
        assert!(count_layers(&warm).downloaded.is_empty());
    }

    /// The containerd store's pull stream (Docker 28.5, recorded): a cold pull reports each
    /// layer (`Pulling fs layer`, `Download complete`, `Pull complete`, no `Downloading` for a
    /// small one), a warm one no layer at all; the final status is what both stores say.
    #[test]
    fn counts_layers_from_the_containerd_stores_pull_stream() {
        let read = |name: &str| -> Vec<(Option<String>, String)> {
            let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../fixtures/docker-api")
                .join(name);
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    (
                        v["id"].as_str().map(String::from),
                        v["status"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        };
        let cold = count_layers(&read("pull-28.5-containerd-cold.jsonl"));
        assert_eq!(cold.downloaded.len(), 1, "{cold:?}");
        assert!(cold
            .final_status
            .starts_with("Status: Downloaded newer image"));
        let warm = count_layers(&read("pull-28.5-containerd-warm.jsonl"));
        assert!(
            warm.downloaded.is_empty() && warm.already.is_empty(),
            "{warm:?}"
        );
        assert!(warm.final_status.starts_with("Status: Image is up to date"));
    }
}
