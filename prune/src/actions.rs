//! The run: gates, plan, then the plan's removal steps ([`Step::ALL`]: containers, images,
//! build cache), each preceded by a fresh check of every gate. A dry run shows the plan; a real
//! run executes that same plan, item by item. If a gate closes, the run stops there and says
//! so; `removed` then lists what was already removed.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::docker::{DockerClient, DockerError, ServiceInfo};
use crate::gates::{converge_gate, disk_gate, disk_usage, runs_gate, Gate, GateDecision};
use crate::plan::{self, Inventory, Plan, Policy};
use crate::report::{done_line, gate_line, would_remove_lines, Outcome, Removed, Report};
use crate::steps::Done;
pub use crate::steps::Step;

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
/// Images are selected as if the plan's containers were already gone (the run removes them
/// first), so an image used only by such a container is in the plan.
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
    hooks.log(&gate_line(&disk));
    if !disk.pass {
        let mut r = Report::new(Outcome::Skipped, vec![disk]);
        r.skipped_by = Some(Gate::Disk);
        return Ok(r);
    }
    let client = DockerClient::connect(&cfg.docker_host).await?;
    run_with(cfg, &client, disk, dry_run, hooks).await
}

/// [`run`] on an existing client, after the `disk` gate passed: the other gates, the plan,
/// then the plan shown (dry run) or executed.
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
        hooks.log(&gate_line(d));
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
        Ok(show(cfg, &plan, check.decisions, hooks))
    } else {
        execute(cfg, client, &plan, hooks).await
    }
}

/// The dry run: every item of every step, as the real run would remove it.
fn show(cfg: &Config, plan: &Plan, gates: Vec<GateDecision>, hooks: &mut dyn Hooks) -> Report {
    for step in Step::ALL {
        for item in step.items(plan, cfg.until) {
            for line in would_remove_lines(&item) {
                hooks.log(&line);
            }
        }
    }
    let mut r = Report::new(Outcome::DryRun, gates);
    r.removed = Removed::from(plan);
    r.reclaimed_bytes = plan.bytes();
    hooks.log(&r.summary_line());
    r
}

/// What a real run removed so far.
#[derive(Debug, Default)]
struct Progress {
    removed: Removed,
    reclaimed: u64,
    /// Every id the daemon reported deleted (an image's untagged parents go with it).
    deleted: HashSet<String>,
}

impl Progress {
    fn record(&mut self, step: Step, done: &Done) {
        let (ids, bytes) = done.removed();
        self.removed.of_step(step).extend_from_slice(ids);
        self.reclaimed += bytes;
        if let Done::Removed { parents, .. } = done {
            self.deleted.extend(parents.iter().cloned());
        }
    }
}

/// The real run: the plan's steps in order, each re-gated right before it runs.
async fn execute(
    cfg: &Config,
    client: &DockerClient,
    plan: &Plan,
    hooks: &mut dyn Hooks,
) -> Result<Report, PruneError> {
    let mut progress = Progress::default();
    let mut gates = Vec::new();
    for step in Step::ALL {
        hooks.before_step(step);
        let check = recheck(cfg, client, hooks).await?;
        if check.closed_by.is_some() {
            let r = skipped(check, progress.removed, progress.reclaimed);
            hooks.log(&r.summary_line());
            return Ok(r);
        }
        gates = check.decisions;
        for item in step.items(plan, cfg.until) {
            let done = item.remove(client, &progress.deleted).await?;
            if let Some(line) = done_line(&item, &done) {
                hooks.log(&line);
            }
            progress.record(step, &done);
        }
    }
    let mut r = Report::new(Outcome::Pruned, gates);
    r.removed = progress.removed;
    r.reclaimed_bytes = progress.reclaimed;
    hooks.log(&r.summary_line());
    Ok(r)
}

/// Every gate again; the first closed one is logged.
async fn recheck(
    cfg: &Config,
    client: &DockerClient,
    hooks: &mut dyn Hooks,
) -> Result<GateCheck, PruneError> {
    let check = check_gates(cfg, client).await?;
    if let Some(d) = check.decisions.iter().find(|d| !d.pass) {
        hooks.log(&gate_line(d));
    }
    Ok(check)
}
