//! The probe: what a CI run does to the image cache, done once per gate run and read by
//! `cache.image-survives-teardown`, `cache.warm-redeploy-zero-layers` and
//! `prune.keeps-deployed-images`.
//!
//! 1. resolve the probe image's digest the way `docker service create` does (distribution
//!    inspect) and deploy a swarm service pinned to `image@digest`, with a named volume and a
//!    secret, under a unique name; no pull by tag first, so the image ends up with no tag;
//! 2. tear it down as a CI teardown does: service, then volume and secret — never images — and
//!    the host's own extra teardown steps from the spec;
//! 3. check the image (same id) is still in the store;
//! 4. ask the deployed prune for a dry run with every gate forced open and `--until 0s`;
//! 5. run what the spec says happens between runs, then redeploy: a pull by digest (its progress
//!    stream counts layers downloaded) and the service again, with the daemon's events recorded;
//! 6. always remove the probe's service, volume and secret, on failure too.

use crate::prune::deployed_argv;
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
use ccci_core::{Evidence, Outcome};
use futures_util::StreamExt;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// What the probe saw, step by step. `None` for a step that did not run.
#[derive(Debug, Clone, Default)]
pub struct ProbeRun {
    pub service: String,
    /// `image@digest` the service was pinned to.
    pub pinned: Option<String>,
    /// The image id the deployed task ran.
    pub image_id: Option<String>,
    /// Tags the image carried after the deploy (a swarm deploy adds none; a tag left by an
    /// earlier `docker pull` by tag makes the image non-dangling, a weaker test of the prune).
    pub tags: Vec<String>,
    /// After teardown: the id found in the store (None = gone).
    pub after_teardown: Option<Option<String>>,
    /// The dry run: its outcome, the ids it would remove, and whether the probe's is among them.
    pub dry_run: Option<DryRun>,
    /// The warm pull: layers downloaded (ids) and layers found locally.
    pub warm_pull: Option<PullStats>,
    /// Image pull events the daemon reported during the redeploy.
    pub redeploy_pull_events: Option<usize>,
    /// The redeploy converged, and ran this image id.
    pub redeploy_image_id: Option<String>,
    /// A step that could not be done (an error, not a verdict), with which step.
    pub error: Option<String>,
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Clone)]
pub struct DryRun {
    pub outcome: String,
    pub skipped_by: Option<String>,
    pub images: Vec<String>,
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

/// The probe run of this gate run (run on first use, then shared).
pub async fn get(ctx: &Ctx) -> &ProbeRun {
    ctx.probe.get_or_init(|| run(ctx)).await
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
    let res = steps(ctx, &docker, &mut p).await;
    cleanup(&docker, &mut p).await;
    if let Err(e) = res {
        p.error = Some(e);
    }
    p
}

fn secret_name(service: &str) -> String {
    format!("{service}_secret")
}
fn volume_name(service: &str) -> String {
    format!("{service}_data")
}

async fn deploy(docker: &Docker, p: &mut ProbeRun, pinned: &str) -> Result<(), String> {
    let svc = p.service.clone();
    let mut labels = HashMap::new();
    labels.insert("com.docker.stack.namespace".to_string(), svc.clone());
    labels.insert("ccci.probe".to_string(), "1".to_string());
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
                .map_err(|e| format!("POST /secrets/create {secret}: {e}"))?;
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
        .map_err(|e| format!("POST /volumes/create {vol}: {e}"))?;
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
        .map_err(|e| format!("POST /services/create {svc} image={pinned}: {e}"))?;
    p.evidence.push(Evidence::api(
        format!(
            "POST /services/create name={svc} image={pinned} replicas=1 (+ volume {vol}, secret)"
        ),
        format!("service id {}", r.id.unwrap_or_default()),
    ));
    Ok(())
}

/// Wait until the service has a running task; return the image id its container runs.
async fn wait_running(docker: &Docker, p: &mut ProbeRun, secs: u64) -> Result<String, String> {
    let svc = p.service.clone();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut filters = HashMap::new();
    filters.insert("service", vec![svc.as_str()]);
    loop {
        let tasks = docker
            .list_tasks(Some(
                ListTasksOptionsBuilder::default().filters(&filters).build(),
            ))
            .await
            .map_err(|e| format!("GET /tasks?service={svc}: {e}"))?;
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
                        .map_err(|e| format!("GET /containers/{cid}/json: {e}"))?;
                    let image = c.image.unwrap_or_default();
                    p.evidence.push(Evidence::api(
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
            p.evidence.push(Evidence::api(
                format!("GET /tasks?service={svc}"),
                last.clone(),
            ));
            return Err(format!(
                "{svc} did not converge to 1/1 within {secs}s: {last}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Remove the service (as a teardown does) and wait until its containers are gone.
async fn remove_service(docker: &Docker, svc: &str) -> Result<(), String> {
    match docker.delete_service(svc).await {
        Ok(()) => {}
        Err(e) if e.to_string().contains("not found") => {}
        Err(e) => return Err(format!("DELETE /services/{svc}: {e}")),
    }
    let mut filters = HashMap::new();
    let label = format!("com.docker.swarm.service.name={svc}");
    filters.insert("label", vec![label.as_str()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let cs = docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(|e| format!("GET /containers/json: {e}"))?;
        if cs.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} container(s) of {svc} still there 60s after removal",
                cs.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn remove_volume_and_secret(docker: &Docker, svc: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let vol = volume_name(svc);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match docker
            .remove_volume(&vol, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
        {
            Ok(()) => break,
            Err(e)
                if e.to_string().contains("no such volume")
                    || e.to_string().contains("not found") =>
            {
                break
            }
            Err(e) if Instant::now() < deadline && e.to_string().contains("in use") => {
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
        Err(e) if e.to_string().contains("not found") => {}
        Err(e) => errs.push(format!("DELETE /secrets/{sec}: {e}")),
    }
    errs
}

fn substitute(argv: &[String], svc: &str, image_id: &str) -> Vec<String> {
    argv.iter()
        .map(|a| a.replace("{service}", svc).replace("{image_id}", image_id))
        .collect()
}

async fn run_hooks(
    ctx: &Ctx,
    p: &mut ProbeRun,
    hooks: &[Vec<String>],
    what: &str,
) -> Result<(), String> {
    let image_id = p.image_id.clone().unwrap_or_default();
    for h in hooks {
        if h.is_empty() {
            continue;
        }
        let argv = substitute(h, &p.service, &image_id);
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let (out, ev) = ctx.run(&refs).await;
        p.evidence.push(Evidence::new(
            format!("({what}) {}", ev.command),
            ev.exit,
            ev.output,
        ));
        match out {
            Some(o) if o.ok() => {}
            Some(o) => {
                return Err(format!(
                    "{what} step `{}` exited {}",
                    argv.join(" "),
                    o.status
                ))
            }
            None => return Err(format!("{what} step `{}` could not run", argv.join(" "))),
        }
    }
    Ok(())
}

async fn image_present(docker: &Docker, id: &str) -> Result<Option<String>, String> {
    match docker.inspect_image(id).await {
        Ok(i) => Ok(i.id),
        Err(e) if e.to_string().contains("No such image") || e.to_string().contains("404") => {
            Ok(None)
        }
        Err(e) => Err(format!("GET /images/{id}/json: {e}")),
    }
}

/// The flags a dry run with every gate forced open adds; the deployed argv's own values of
/// these flags are dropped first, so the run is the deployed one with only the gates opened.
pub const FORCE_OPEN: &[&str] = &[
    "--dry-run",
    "--json",
    "--threshold",
    "0",
    "--until",
    "0s",
    "--run-stack-pattern",
    "^ccci-verify-matches-no-service$",
];

/// The deployed argv without the flags [`FORCE_OPEN`] sets, then [`FORCE_OPEN`].
pub fn forced_open_argv(deployed: &[String]) -> Vec<String> {
    crate::prune::with_flags(
        deployed,
        &["--threshold", "--until", "--run-stack-pattern"],
        FORCE_OPEN,
    )
}

async fn dry_run(ctx: &Ctx, p: &mut ProbeRun) -> Result<(), String> {
    let (argv, ev) = deployed_argv(ctx)
        .await
        .map_err(|o| format!("cannot read the deployed prune: {}", o.detail))?;
    p.evidence.push(ev);
    let argv = forced_open_argv(&argv);
    let (v, ev) = crate::prune::run_json(ctx, &argv).await;
    p.evidence.push(ev);
    let v = v?;
    let images = v["removed"]["images"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    p.dry_run = Some(DryRun {
        outcome: v["outcome"].as_str().unwrap_or("").to_string(),
        skipped_by: v["skipped_by"].as_str().map(String::from),
        images,
    });
    Ok(())
}

async fn warm_pull(docker: &Docker, p: &mut ProbeRun, pinned: &str) -> Result<(), String> {
    let (repo, digest) = pinned
        .split_once('@')
        .ok_or_else(|| format!("{pinned} is not pinned by digest"))?;
    let repo = repo.rsplit_once(':').map(|(r, _)| r).unwrap_or(repo);
    let opts = CreateImageOptionsBuilder::default()
        .from_image(repo)
        .tag(digest)
        .build();
    let mut stream = docker.create_image(Some(opts), None, None);
    let mut events = Vec::new();
    let mut lines = Vec::new();
    while let Some(item) = stream.next().await {
        let info =
            item.map_err(|e| format!("POST /images/create?fromImage={repo}&tag={digest}: {e}"))?;
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
    p.evidence.push(Evidence::api(
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

async fn steps(ctx: &Ctx, docker: &Docker, p: &mut ProbeRun) -> Result<(), String> {
    let image = ctx.params.probe.image.clone();
    let secs = ctx.params.probe.converge_secs;
    // 1. pin by digest, as `docker service create` does, and deploy
    let dist = docker
        .inspect_registry_image(&image, None)
        .await
        .map_err(|e| format!("GET /distribution/{image}/json: {e}"))?;
    let digest = dist.descriptor.digest.clone().unwrap_or_default();
    if digest.is_empty() {
        return Err(format!("the registry returned no digest for {image}"));
    }
    let pinned = format!("{image}@{digest}");
    p.evidence.push(Evidence::api(
        format!("GET /distribution/{image}/json"),
        format!("digest {digest}"),
    ));
    p.pinned = Some(pinned.clone());
    deploy(docker, p, &pinned).await?;
    let id = wait_running(docker, p, secs).await?;
    p.image_id = Some(id.clone());
    // how the deploy left the image: a swarm deploy pins by digest and adds no tag
    if let Ok(img) = docker.inspect_image(&id).await {
        p.tags = img
            .repo_tags
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t != "<none>:<none>")
            .collect();
        p.evidence.push(Evidence::api(
            format!("GET /images/{}/json (after deploy)", short(&id)),
            format!(
                "RepoTags={:?} RepoDigests={:?}",
                img.repo_tags.unwrap_or_default(),
                img.repo_digests.unwrap_or_default()
            ),
        ));
    }
    // 2. teardown: service, volume, secret; then the host's own extra steps
    remove_service(docker, &p.service).await?;
    let errs = remove_volume_and_secret(docker, &p.service).await;
    p.evidence.push(Evidence::api(
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
    let hooks = ctx.params.probe.teardown_extra.clone();
    run_hooks(ctx, p, &hooks, "teardown").await?;
    // 3. the image is still there
    let found = image_present(docker, &id).await?;
    p.evidence.push(Evidence::api(
        format!("GET /images/{id}/json (after teardown)"),
        match &found {
            Some(f) => format!("present: {f}"),
            None => "No such image".to_string(),
        },
    ));
    p.after_teardown = Some(found);
    // 4. the deployed prune, every gate forced open
    if let Err(e) = dry_run(ctx, p).await {
        p.evidence.push(Evidence::note("dry run", e.clone()));
    }
    // 5. between runs, then redeploy
    let hooks = ctx.params.probe.before_redeploy.clone();
    run_hooks(ctx, p, &hooks, "between runs").await?;
    let since = chrono::Utc::now().timestamp() - 1;
    warm_pull(docker, p, &pinned).await?;
    deploy(docker, p, &pinned).await?;
    let id2 = wait_running(docker, p, secs).await?;
    p.redeploy_image_id = Some(id2);
    let until = chrono::Utc::now().timestamp() + 1;
    let mut filters = HashMap::new();
    filters.insert("type", vec!["image"]);
    filters.insert("event", vec!["pull"]);
    let opts = EventsOptionsBuilder::default()
        .since(&since.to_string())
        .until(&until.to_string())
        .filters(&filters)
        .build();
    let mut events = docker.events(Some(opts));
    let mut pulls = Vec::new();
    while let Some(ev) = events.next().await {
        let ev = ev.map_err(|e| format!("GET /events: {e}"))?;
        let actor = ev.actor.and_then(|a| a.id).unwrap_or_default();
        pulls.push(format!("{} {}", ev.action.unwrap_or_default(), actor));
    }
    p.evidence.push(Evidence::api(
        format!("GET /events?since={since}&until={until}&filters={{type:image,event:pull}}"),
        if pulls.is_empty() {
            "(no pull events)".to_string()
        } else {
            pulls.join("\n")
        },
    ));
    // our own warm pull by digest is one pull event; anything beyond it is the redeploy pulling
    p.redeploy_pull_events = Some(pulls.len().saturating_sub(1));
    Ok(())
}

async fn cleanup(docker: &Docker, p: &mut ProbeRun) {
    let mut errs = Vec::new();
    if let Err(e) = remove_service(docker, &p.service).await {
        errs.push(e);
    }
    errs.extend(remove_volume_and_secret(docker, &p.service).await);
    p.evidence.push(Evidence::api(
        format!("cleanup of {}", p.service),
        if errs.is_empty() {
            "probe service, volume and secret removed".into()
        } else {
            errs.join("\n")
        },
    ));
}

fn short(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..12.min(id.len())]
}

fn same_id(a: &str, b: &str) -> bool {
    a.strip_prefix("sha256:").unwrap_or(a) == b.strip_prefix("sha256:").unwrap_or(b)
}

impl ProbeRun {
    fn outcome(&self, o: Outcome) -> Outcome {
        o.with_evidence(self.evidence.clone())
    }

    fn error_before(&self, step: &str) -> Outcome {
        self.outcome(Outcome::error(format!(
            "the probe failed before {step}: {}",
            self.error
                .clone()
                .unwrap_or_else(|| "step did not run".into())
        )))
    }

    pub fn decide_survives_teardown(&self) -> Outcome {
        let (Some(id), Some(after)) = (&self.image_id, &self.after_teardown) else {
            return self.error_before("the teardown check");
        };
        match after {
            Some(found) if same_id(found, id) => self.outcome(Outcome::pass(format!(
                "{} survived the teardown of {} (image {} still in the store)",
                self.pinned.clone().unwrap_or_default(),
                self.service,
                short(id)
            ))),
            Some(found) => self.outcome(Outcome::fail(format!(
                "the store has {} where the probe ran {}",
                short(found),
                short(id)
            ))),
            None => self.outcome(Outcome::fail(format!(
                "image {} is gone after the teardown of {}: the next run re-pulls it",
                short(id),
                self.service
            ))),
        }
    }

    pub fn decide_keeps_deployed(&self) -> Outcome {
        let Some(id) = &self.image_id else {
            return self.error_before("the dry run");
        };
        match &self.after_teardown {
            Some(Some(_)) => {}
            Some(None) => {
                return self.outcome(Outcome::fail(format!(
                    "image {} was already gone after the teardown, before the prune ran",
                    short(id)
                )))
            }
            None => return self.error_before("the dry run"),
        }
        let Some(dr) = &self.dry_run else {
            return self.outcome(Outcome::error(
                "the deployed prune's dry run gave no report".to_string(),
            ));
        };
        if dr.outcome != "dry-run" {
            return self.outcome(Outcome::error(format!(
                "the dry run did not get past its gates (outcome {}, skipped by {}): cannot show what it would remove",
                dr.outcome,
                dr.skipped_by.clone().unwrap_or_default()
            )));
        }
        if dr.images.iter().any(|i| same_id(i, id)) {
            self.outcome(Outcome::fail(format!(
                "the deployed prune would delete the probe's image {} (a cached pull left untagged by swarm): {} candidate image(s)",
                short(id),
                dr.images.len()
            )))
        } else {
            let caveat = if self.tags.is_empty() {
                " (untagged, as swarm left it)".to_string()
            } else {
                format!(
                    " — note: the image also carries {} from an earlier pull by tag, so it is not dangling to the daemon either; the untagged case was not exercised",
                    self.tags.join(", ")
                )
            };
            self.outcome(Outcome::pass(format!(
                "the dry run lists {} image(s), not the probe's {}{caveat}",
                dr.images.len(),
                short(id)
            )))
        }
    }

    pub fn decide_warm_redeploy(&self) -> Outcome {
        let (Some(id), Some(pull), Some(events), Some(id2)) = (
            &self.image_id,
            &self.warm_pull,
            self.redeploy_pull_events,
            &self.redeploy_image_id,
        ) else {
            return self.error_before("the redeploy completed");
        };
        let mut bad = Vec::new();
        if !pull.downloaded.is_empty() {
            bad.push(format!(
                "the pull downloaded {} layer(s)",
                pull.downloaded.len()
            ));
        }
        if events > 0 {
            bad.push(format!(
                "the daemon reported {events} extra pull event(s) during the redeploy"
            ));
        }
        if !same_id(id, id2) {
            bad.push(format!(
                "the redeploy runs image {} instead of {}",
                short(id2),
                short(id)
            ));
        }
        if bad.is_empty() {
            self.outcome(Outcome::pass(format!(
                "redeploy converged on image {} with 0 layers pulled ({})",
                short(id),
                pull.final_status
            )))
        } else {
            self.outcome(Outcome::fail(bad.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn forced_open_drops_the_deployed_gate_flags() {
        let d: Vec<String> = [
            "/usr/local/bin/ci-docker-prune",
            "--threshold",
            "80",
            "--path",
            "/",
            "--until=24h",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let f = forced_open_argv(&d);
        assert_eq!(f.iter().filter(|a| *a == "--threshold").count(), 1);
        assert!(!f.contains(&"80".to_string()));
        assert!(f.contains(&"--path".to_string()) && f.contains(&"/".to_string()));
        assert!(!f.iter().any(|a| a.starts_with("--until=")));
        assert_eq!(f.iter().filter(|a| *a == "--json").count(), 1);
    }

    fn run_with(after: Option<Option<&str>>, dry: Option<Vec<&str>>) -> ProbeRun {
        ProbeRun {
            service: "p".into(),
            pinned: Some("redis:7-alpine@sha256:d".into()),
            image_id: Some("sha256:aaaa".into()),
            after_teardown: after.map(|a| a.map(String::from)),
            dry_run: dry.map(|v| DryRun {
                outcome: "dry-run".into(),
                skipped_by: None,
                images: v.into_iter().map(String::from).collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn decisions() {
        use ccci_core::Verdict::*;
        assert_eq!(
            run_with(Some(Some("sha256:aaaa")), None)
                .decide_survives_teardown()
                .verdict,
            Pass
        );
        assert_eq!(
            run_with(Some(None), None)
                .decide_survives_teardown()
                .verdict,
            Fail
        );
        assert_eq!(
            run_with(None, None).decide_survives_teardown().verdict,
            Error
        );
        assert_eq!(
            run_with(Some(Some("sha256:aaaa")), Some(vec!["sha256:bbbb"]))
                .decide_keeps_deployed()
                .verdict,
            Pass
        );
        assert_eq!(
            run_with(Some(Some("sha256:aaaa")), Some(vec!["sha256:aaaa"]))
                .decide_keeps_deployed()
                .verdict,
            Fail
        );
        assert_eq!(
            run_with(Some(Some("sha256:aaaa")), Some(vec!["aaaa"]))
                .decide_keeps_deployed()
                .verdict,
            Fail
        );
        assert_eq!(
            run_with(Some(None), Some(vec![]))
                .decide_keeps_deployed()
                .verdict,
            Fail
        );
    }
}
