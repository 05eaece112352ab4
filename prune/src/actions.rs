//! The run: gates, plan, then the removal steps (containers, images, build cache), each
//! preceded by a fresh check of every gate. If a gate closes, the run stops there and says so;
//! `removed` then lists what was already removed.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::docker::{DockerClient, DockerError, Removal, ServiceInfo};
use crate::gates::{converge_gate, disk_gate, disk_usage, runs_gate, Gate, GateDecision};
use crate::plan::{self, Inventory, Plan, Policy};
use crate::report::{human_bytes, Outcome, Removed, Report};

/// Errors of a run. `Docker` errors and disk measurement errors are runtime errors (exit 1);
/// a path that does not exist is the user's (exit 2, see [`PruneError::is_usage`]).
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error("cannot measure disk usage of {path}: {cause}")]
    Disk {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Docker(#[from] DockerError),
}

impl PruneError {
    /// True when the error is bad input rather than a runtime failure.
    pub fn is_usage(&self) -> bool {
        matches!(self, PruneError::Disk { cause, .. }
            if matches!(cause.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidInput))
    }
}

/// A removal step, in run order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Containers,
    Images,
    BuildCache,
}

/// Where the run reports. `log` gets one journald-friendly line per decision; `before_step`
/// is called right before the gates are re-checked for a step (tests use it to change the
/// world between steps).
pub trait Hooks {
    fn log(&mut self, line: &str);
    fn before_step(&mut self, _step: Step) {}
}

/// Hooks that collect the log lines.
#[derive(Debug, Default)]
pub struct Collect(pub Vec<String>);

impl Hooks for Collect {
    fn log(&mut self, line: &str) {
        self.0.push(line.to_string());
    }
}

/// The result of evaluating the gates once.
#[derive(Debug, Clone)]
pub struct GateCheck {
    /// In order, up to and including the first closed gate.
    pub decisions: Vec<GateDecision>,
    pub closed_by: Option<Gate>,
    /// Services as listed for the `runs` gate (reused by the plan).
    pub services: Vec<ServiceInfo>,
}

/// `disk` gate: measure every path (no API call).
pub fn check_disk(cfg: &Config) -> Result<GateDecision, PruneError> {
    let usages = cfg
        .paths
        .iter()
        .map(|p| {
            disk_usage(p).map_err(|cause| PruneError::Disk {
                path: p.clone(),
                cause,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(disk_gate(cfg.threshold, &usages))
}

/// `runs` and `converge`: two API calls whatever the number of services.
pub async fn check_docker_gates(
    cfg: &Config,
    client: &DockerClient,
    decisions: &mut Vec<GateDecision>,
) -> Result<(Option<Gate>, Vec<ServiceInfo>), PruneError> {
    let services = client.list_services().await?;
    let runs = runs_gate(&cfg.run_stack_pattern, &services);
    let pass = runs.pass;
    decisions.push(runs);
    if !pass {
        return Ok((Some(Gate::Runs), services));
    }
    let tasks = client.list_running_tasks().await?;
    let converge = converge_gate(&services, &tasks);
    let pass = converge.pass;
    decisions.push(converge);
    Ok(((!pass).then_some(Gate::Converge), services))
}

/// Every gate, in order, stopping at the first closed one.
pub async fn check_gates(cfg: &Config, client: &DockerClient) -> Result<GateCheck, PruneError> {
    let disk = check_disk(cfg)?;
    let mut decisions = vec![disk.clone()];
    if !disk.pass {
        return Ok(GateCheck {
            decisions,
            closed_by: Some(Gate::Disk),
            services: Vec::new(),
        });
    }
    let (closed_by, services) = check_docker_gates(cfg, client, &mut decisions).await?;
    Ok(GateCheck {
        decisions,
        closed_by,
        services,
    })
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn policy(cfg: &Config) -> Policy {
    Policy {
        now: now(),
        until: cfg.until,
        reclaim_superseded_pulls: cfg.reclaim_superseded_pulls,
    }
}

/// List what the plan needs (two API calls; a third for build cache in a dry run) and build it.
pub async fn make_plan(
    cfg: &Config,
    client: &DockerClient,
    services: Vec<ServiceInfo>,
    with_build_cache: bool,
) -> Result<Plan, PruneError> {
    let containers = client.list_containers().await?;
    let images = client.list_images().await?;
    let build_cache = if with_build_cache {
        client.list_build_cache().await?
    } else {
        Vec::new()
    };
    let inv = Inventory {
        services,
        containers,
        images,
        build_cache,
    };
    Ok(plan::build(&inv, &policy(cfg)))
}

fn short(id: &str) -> String {
    id.strip_prefix("sha256:")
        .unwrap_or(id)
        .chars()
        .take(12)
        .collect()
}

fn skipped(check: GateCheck, removed: Removed, reclaimed: u64) -> Report {
    let mut r = Report::new(Outcome::Skipped, check.decisions);
    r.skipped_by = check.closed_by;
    r.removed = removed;
    r.reclaimed_bytes = reclaimed;
    r
}

/// Run the policy. The Docker daemon is contacted only once the `disk` gate passes.
pub async fn run(cfg: &Config, dry_run: bool, hooks: &mut dyn Hooks) -> Result<Report, PruneError> {
    let disk = check_disk(cfg)?;
    hooks.log(&disk.log_line());
    if !disk.pass {
        let mut r = Report::new(Outcome::Skipped, vec![disk]);
        r.skipped_by = Some(Gate::Disk);
        return Ok(r);
    }
    let client = DockerClient::connect(&cfg.docker_host).await?;
    run_with(cfg, &client, disk, dry_run, hooks).await
}

/// [`run`] on an existing client, after the `disk` gate passed.
pub async fn run_with(
    cfg: &Config,
    client: &DockerClient,
    disk: GateDecision,
    dry_run: bool,
    hooks: &mut dyn Hooks,
) -> Result<Report, PruneError> {
    let mut decisions = vec![disk];
    let (closed_by, services) = check_docker_gates(cfg, client, &mut decisions).await?;
    for d in &decisions[1..] {
        hooks.log(&d.log_line());
    }
    let check = GateCheck {
        decisions,
        closed_by,
        services,
    };
    if check.closed_by.is_some() {
        return Ok(skipped(check, Removed::default(), 0));
    }

    let plan = make_plan(cfg, client, check.services.clone(), dry_run).await?;
    if dry_run {
        for c in &plan.containers {
            hooks.log(&format!(
                "ci-docker-prune: would remove stopped container {} ({}, {})",
                short(&c.id),
                c.name,
                c.state
            ));
        }
        for i in &plan.images {
            hooks.log(&format!(
                "ci-docker-prune: would remove image {} ({}, {})",
                short(&i.id),
                reason_text(&i.reason),
                human_bytes(i.size.max(0) as u64)
            ));
        }
        for b in &plan.build_cache {
            hooks.log(&format!(
                "ci-docker-prune: would remove build cache {} ({}, {})",
                b.id,
                b.kind,
                human_bytes(b.size.max(0) as u64)
            ));
        }
        let mut r = Report::new(Outcome::DryRun, check.decisions);
        r.removed = Removed::from(&plan);
        r.reclaimed_bytes = plan.bytes();
        hooks.log(&r.summary_line());
        return Ok(r);
    }

    let mut removed = Removed::default();
    let mut reclaimed: u64 = 0;

    // Step 1: stopped containers.
    hooks.before_step(Step::Containers);
    let check = recheck(cfg, client, hooks).await?;
    if check.closed_by.is_some() {
        return Ok(stop(check, removed, reclaimed, hooks));
    }
    for c in &plan.containers {
        match client.remove_container(&c.id).await? {
            Removal::Removed(_) => {
                hooks.log(&format!(
                    "ci-docker-prune: removed stopped container {} ({}, {})",
                    short(&c.id),
                    c.name,
                    c.state
                ));
                removed.containers.push(c.id.clone());
            }
            Removal::Conflict(msg) => hooks.log(&format!(
                "ci-docker-prune: kept container {} ({}): {msg}",
                short(&c.id),
                c.name
            )),
            Removal::Gone => hooks.log(&format!(
                "ci-docker-prune: container {} already gone",
                short(&c.id)
            )),
        }
    }

    // Step 2: images, selected again from fresh lists (containers just went away).
    hooks.before_step(Step::Images);
    let check = recheck(cfg, client, hooks).await?;
    if check.closed_by.is_some() {
        return Ok(stop(check, removed, reclaimed, hooks));
    }
    let containers = client.list_containers().await?;
    let images = client.list_images().await?;
    let candidates = plan::select_images(&images, &containers, &check.services, &policy(cfg));
    let mut deleted: HashSet<String> = HashSet::new();
    for i in &candidates {
        if deleted.contains(&i.id) {
            // already removed with a child image (untagged parents go with it)
            removed.images.push(i.id.clone());
            reclaimed += i.size.max(0) as u64;
            continue;
        }
        match client.remove_image(&i.id).await? {
            Removal::Removed(ids) => {
                let extra = ids.iter().filter(|d| **d != i.id).count();
                hooks.log(&format!(
                    "ci-docker-prune: removed image {} ({}, {}){}",
                    short(&i.id),
                    reason_text(&i.reason),
                    human_bytes(i.size.max(0) as u64),
                    if extra > 0 {
                        format!(" with {extra} untagged parent layer(s)")
                    } else {
                        String::new()
                    }
                ));
                deleted.extend(ids);
                removed.images.push(i.id.clone());
                reclaimed += i.size.max(0) as u64;
            }
            Removal::Conflict(msg) => hooks.log(&format!(
                "ci-docker-prune: kept image {}: in use now ({msg})",
                short(&i.id)
            )),
            Removal::Gone => hooks.log(&format!(
                "ci-docker-prune: image {} already gone",
                short(&i.id)
            )),
        }
    }

    // Step 3: build cache older than `until`.
    hooks.before_step(Step::BuildCache);
    let check = recheck(cfg, client, hooks).await?;
    if check.closed_by.is_some() {
        return Ok(stop(check, removed, reclaimed, hooks));
    }
    let pruned = client.prune_build_cache(cfg.until).await?;
    hooks.log(&format!(
        "ci-docker-prune: removed {} build cache record(s) older than {} ({})",
        pruned.ids.len(),
        humantime::format_duration(cfg.until),
        human_bytes(pruned.bytes)
    ));
    removed.build_cache = pruned.ids;
    reclaimed += pruned.bytes;

    let mut r = Report::new(Outcome::Pruned, check.decisions);
    r.removed = removed;
    r.reclaimed_bytes = reclaimed;
    hooks.log(&r.summary_line());
    Ok(r)
}

async fn recheck(
    cfg: &Config,
    client: &DockerClient,
    hooks: &mut dyn Hooks,
) -> Result<GateCheck, PruneError> {
    let check = check_gates(cfg, client).await?;
    if let Some(d) = check.decisions.iter().find(|d| !d.pass) {
        hooks.log(&d.log_line());
    }
    Ok(check)
}

fn stop(check: GateCheck, removed: Removed, reclaimed: u64, hooks: &mut dyn Hooks) -> Report {
    let r = skipped(check, removed, reclaimed);
    hooks.log(&r.summary_line());
    r
}

fn reason_text(r: &plan::ImageReason) -> String {
    match r {
        plan::ImageReason::BuildLeftover => "untagged build leftover, no repo digest".into(),
        plan::ImageReason::SupersededPull { repo } => {
            format!("superseded cached pull of {repo}, opt-in")
        }
    }
}
