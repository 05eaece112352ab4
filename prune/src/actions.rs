//! The run: gates, plan, then the plan's removal steps ([`Step::ALL`]: containers, images,
//! build cache), each preceded by a fresh check of every gate. A dry run shows the plan; a real
//! run executes that same plan, item by item. If a gate closes, the run stops there and says
//! so; `removed` then lists what was already removed. One item the daemon fails to remove is
//! that item's failure: the run goes on with the next item and the next step, and ends with
//! outcome `error` (exit 1). An error that leaves the run unable to gate or plan (the daemon
//! unreachable, a listing that fails, a `--path` that vanished) stops it there, also `error`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::docker::{DockerClient, DockerError, ServiceInfo, Swarm};
use crate::evict::{self, EvictPolicy};
use crate::gates::DiskUsage;
use crate::gates::{converge_gate, disk_gate, disk_usage, runs_gate, Gate, GateDecision};
use crate::plan::{self, Inventory, Plan, Policy};
use crate::report::{
    below_threshold_line, done_lines, evict_lines, gate_line, stalled_line, would_remove_lines,
    BelowThreshold, Failure, Incident, Outcome, Removed, RemovedImage, Report, Stalled,
};
use crate::roots::DaemonRoots;
use crate::stall;
use crate::statefile;
pub use crate::steps::Step;
use crate::steps::{Done, FreshRefs, Item};
use crate::usage::{self, Observation, UsageState};

/// Errors that stop a run. Every one is a runtime error (exit 1): a `--path` that does not
/// exist when the run starts is refused before it ([`Config::check_paths_exist`], exit 2), so
/// one that cannot be measured here vanished mid-run.
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
    /// The `error` of the report: what stopped the run.
    pub fn message(&self) -> String {
        match self {
            PruneError::Docker(DockerError::Unreachable { .. }) => self.to_string(),
            _ => format!("prune aborted, nothing further removed: {self}"),
        }
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

/// `disk` gate: measure every path (no API call): the `--path`s and, with the containerd
/// image store, the daemon's data-root and containerd's root as remembered in the state dir
/// ([`crate::roots`]; learnt from the daemon's `GET /info`). The log line names the roots.
pub fn check_disk(cfg: &Config) -> Result<GateDecision, PruneError> {
    check_disk_with(cfg, remembered_roots(cfg).as_ref())
}

/// [`check_disk`] with the roots this run knows.
fn check_disk_with(cfg: &Config, roots: Option<&DaemonRoots>) -> Result<GateDecision, PruneError> {
    let (measured, unmeasured) = usages(cfg, roots)?;
    let mut d = disk_gate(cfg.threshold, &measured);
    if let Some(r) = roots.filter(|r| !r.gate_paths().is_empty()) {
        d.detail = format!("{} ({})", d.detail, r.describe());
    }
    for why in unmeasured {
        d.detail = format!("{}; {why}", d.detail);
    }
    Ok(d)
}

/// The daemon's roots remembered in the state dir, if there is one.
fn remembered_roots(cfg: &Config) -> Option<DaemonRoots> {
    cfg.state_dir.as_deref().and_then(crate::roots::load)
}

/// What a run may do with its state directory, and the daemon's roots it knows.
///
/// A real run holds the directory's lock ([`statefile::lock`]) for its whole length and
/// writes its state; a dry run, a directory that cannot be written (read-only, full) and a run
/// that cannot have the lock write nothing — the reason is logged once, and the run goes on
/// with what it can read.
#[derive(Debug, Default)]
pub struct RunState {
    dir: Option<PathBuf>,
    /// Held while this run may write state.
    lock: Option<statefile::StateLock>,
    /// The daemon's roots: remembered, or learnt by this run.
    roots: Option<DaemonRoots>,
    /// The daemon's clock minus this host's (seconds), from `GET /info`'s `SystemTime` when
    /// this run asked it: the usage state is kept in the daemon's clock.
    clock_offset: Option<i64>,
    /// The stamp the remembered roots were learnt with ([`crate::roots::Stamp`]).
    stamp: Option<crate::roots::Stamp>,
    /// Why the remembered roots may be stale (then a run that can keep new ones asks the
    /// daemon again before the disk gate).
    stale: Option<String>,
}

impl RunState {
    /// Open `cfg.state_dir` for a run (see the type's doc).
    pub fn open(cfg: &Config, dry_run: bool, hooks: &mut dyn Hooks) -> RunState {
        let Some(dir) = cfg.state_dir.clone() else {
            return RunState::default();
        };
        let remembered = crate::roots::load_remembered(&dir);
        let stale = remembered
            .as_ref()
            .and_then(|r| r.why_stale(crate::roots::FileId::of));
        let (roots, stamp) = match remembered {
            Some(r) => (Some(r.roots), r.stamp),
            None => (None, None),
        };
        let lock = if dry_run {
            None
        } else {
            let lock = statefile::lock(&dir, statefile::LOCK_WAIT).and_then(|l| {
                // A full filesystem still takes the empty lock file: a run that must learn
                // the roots (and would contact the daemon for them) first checks it can keep
                // them.
                if roots.is_none() || stale.is_some() {
                    statefile::probe(&dir)?;
                }
                Ok(l)
            });
            match lock {
                Ok(l) => Some(l),
                Err(e) => {
                    hooks.log(&state_lines::unwritable(&dir, &e.to_string()));
                    None
                }
            }
        };
        RunState {
            dir: Some(dir),
            lock,
            roots,
            clock_offset: None,
            stamp,
            stale,
        }
    }

    /// Now on the daemon's clock (this host's when the daemon's is not known).
    fn daemon_now(&self) -> i64 {
        now().saturating_add(self.clock_offset.unwrap_or(0))
    }

    /// The directory, when this run may write state in it.
    fn writable(&self) -> Option<&Path> {
        self.lock.as_ref().and(self.dir.as_deref())
    }

    /// Learn where the daemon keeps its data (`GET /info`) and remember it when it changed and
    /// this run may write state (a write error is logged, never fatal).
    async fn learn_roots(
        &mut self,
        client: &DockerClient,
        hooks: &mut dyn Hooks,
    ) -> Result<(), PruneError> {
        let info = client.info_raw().await?;
        self.clock_offset = info
            .get("SystemTime")
            .and_then(|t| t.as_str())
            .and_then(crate::docker::parse_docker_time)
            .map(|t| t.saturating_sub(now()));
        let roots = crate::roots::of_host(&info);
        let stamp = crate::roots::Stamp::take(
            &roots,
            crate::roots::containerd_address(&info),
            crate::roots::FileId::of,
        );
        if self.roots.as_ref() != Some(&roots) || self.stamp.as_ref() != Some(&stamp) {
            if let Some(dir) = self.writable() {
                let remembered = crate::roots::Remembered {
                    roots: roots.clone(),
                    stamp: Some(stamp.clone()),
                };
                if let Err(e) = crate::roots::save(dir, &remembered) {
                    hooks.log(&state_lines::write_failed(
                        &dir.join(crate::roots::STATE_FILE),
                        &e.to_string(),
                    ));
                }
            }
        }
        self.roots = Some(roots);
        self.stamp = Some(stamp);
        self.stale = None;
        Ok(())
    }
}

/// The log lines about the state directory.
mod state_lines {
    use std::path::Path;

    pub fn unwritable(dir: &Path, why: &str) -> String {
        format!(
            "ci-docker-prune: state directory {} {why}: this run writes no state (usage, daemon roots, gate stall); below the threshold it measures the --path(s) and the roots it already knows, without contacting Docker",
            dir.display()
        )
    }

    pub fn stale(why: &str, asking: bool) -> String {
        if asking {
            format!("ci-docker-prune: the remembered daemon roots may be stale ({why}): asking the daemon where it keeps its data")
        } else {
            format!("ci-docker-prune: the remembered daemon roots may be stale ({why}), and this run cannot keep new ones: measuring them as they are")
        }
    }

    pub fn write_failed(path: &Path, why: &str) -> String {
        format!("ci-docker-prune: cannot write {}: {why}", path.display())
    }
}

/// `runs` and `converge`: two API calls whatever the number of services (an error answer
/// costs one more, `GET /info`; on a worker, one listing of its containers names a run-stack
/// task it runs).
pub async fn check_docker_gates(
    cfg: &Config,
    client: &DockerClient,
    decisions: &mut Vec<GateDecision>,
) -> Result<(Option<Gate>, Vec<ServiceInfo>), PruneError> {
    let services = client.list_services().await?;
    let local = match services {
        Swarm::Worker => client.list_containers().await?,
        _ => Vec::new(),
    };
    let runs = runs_gate(&cfg.run_stack_pattern, &services, &local);
    let pass = runs.pass;
    decisions.push(runs);
    if !pass {
        return Ok((Some(Gate::Runs), Vec::new()));
    }
    let tasks = match services {
        Swarm::Listed(_) => client.list_tasks().await?,
        _ => Swarm::NoSwarm,
    };
    let converge = converge_gate(&services, &tasks);
    let pass = converge.pass;
    decisions.push(converge);
    Ok((
        (!pass).then_some(Gate::Converge),
        services.listed_or_default(),
    ))
}

/// Every gate, in order, stopping at the first closed one.
pub async fn check_gates(cfg: &Config, client: &DockerClient) -> Result<GateCheck, PruneError> {
    check_gates_with(cfg, remembered_roots(cfg).as_ref(), client).await
}

/// [`check_gates`] with the roots this run knows.
async fn check_gates_with(
    cfg: &Config,
    roots: Option<&DaemonRoots>,
    client: &DockerClient,
) -> Result<GateCheck, PruneError> {
    let disk = check_disk_with(cfg, roots)?;
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
    make_plan_with(cfg, client, services, with_build_cache, None).await
}

fn evict_policy(cfg: &Config) -> EvictPolicy {
    EvictPolicy {
        now: now(),
        keep_recent: cfg.evict_keep_recent,
        low_watermark: cfg.evict_low_watermark,
        min_age: cfg.evict_min_age,
    }
}

/// [`make_plan`], with the eviction tier's queue when the tier is on: ordered by `state`, or,
/// without a state directory, by what this listing alone shows (everything counts as used
/// now: only superseded cached pulls qualify, oldest first).
pub async fn make_plan_with(
    cfg: &Config,
    client: &DockerClient,
    services: Vec<ServiceInfo>,
    with_build_cache: bool,
    state: Option<&UsageState>,
) -> Result<Plan, PruneError> {
    let mut containers = client.list_containers().await?;
    let pol = policy(cfg);
    // Stopped containers go by when they stopped, which only an inspect tells: one request
    // per stopped container created before the cutoff (a younger one cannot be old).
    for c in containers.iter_mut().filter(|c| plan::may_be_old(c, &pol)) {
        c.finished = client.container_finished_at(&c.id).await?;
    }
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
    let mut plan = plan::build(&inv, &pol);
    if cfg.evict {
        let mut p = evict_policy(cfg);
        // the state's times are the daemon's clock: this run observed it at its cursor
        if let Some(at) = state.and_then(|s| s.cursor) {
            p.now = at;
        }
        let fresh;
        let state = match state {
            Some(s) => s,
            None => {
                let mut s = UsageState::new();
                s.observe(&Observation {
                    now: p.now,
                    boot_id: None,
                    images: &inv.images,
                    services: &inv.services,
                    containers: &inv.containers,
                    events: &[],
                    marks: None,
                });
                fresh = s;
                &fresh
            }
        };
        plan.evict = evict::queue(&plan, &inv, state, &p);
    }
    Ok(plan)
}

/// The usage of the `--path`s and of the daemon's remembered roots (containerd store): what
/// the disk gate compares. A `--path` that cannot be measured is an error; a remembered root
/// that cannot be (the daemon moved it) is left out and said (the second list, for the gate's
/// detail).
fn usages(
    cfg: &Config,
    roots: Option<&DaemonRoots>,
) -> Result<(Vec<DiskUsage>, Vec<String>), PruneError> {
    let mut out = cfg
        .paths
        .iter()
        .map(|p| {
            disk_usage(p).map_err(|cause| PruneError::Disk {
                path: p.clone(),
                cause,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut unmeasured = Vec::new();
    for p in roots.map(|r| r.gate_paths()).unwrap_or_default() {
        if !cfg.paths.contains(&p) {
            match disk_usage(&p) {
                Ok(u) => out.push(u),
                Err(e) => {
                    unmeasured.push(format!("remembered root {} not measured: {e}", p.display()))
                }
            }
        }
    }
    Ok((out, unmeasured))
}

fn max_percent(u: &[DiskUsage]) -> u8 {
    u.iter().map(DiskUsage::percent).max().unwrap_or(0)
}

/// `/proc/sys/kernel/random/boot_id`: a reboot empties the daemon's event buffer.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Feed the usage state in the state directory with what the daemon shows now (images,
/// services, containers, the events since the last run) and save it when this run may write
/// state ([`RunState`]: not in a dry run). Never fatal to the run: a state that cannot be read
/// starts afresh, events that cannot be read count as lost (everything used now), a state that
/// cannot be written is said in the log.
pub async fn record_usage(
    cfg: &Config,
    rs: &RunState,
    client: &DockerClient,
    hooks: &mut dyn Hooks,
) -> Result<Option<UsageState>, PruneError> {
    let Some(dir) = rs.dir.as_deref().filter(|_| cfg.evict) else {
        return Ok(None);
    };
    let path = usage::state_path(dir);
    let mut state = UsageState::load(&path).unwrap_or_else(|e| {
        hooks.log(&format!(
            "ci-docker-prune: {e} — starting afresh: every image counts as used now"
        ));
        UsageState::new()
    });
    // the daemon's clock: its events and stamps are in it (a clock that jumped shows here)
    let now = rs.daemon_now();
    let images = client.list_images().await?;
    let services = client.list_services().await?.listed_or_default();
    let containers = client.list_containers().await?;
    let (events, marks): (Vec<_>, Vec<_>) = match client
        .events_since(state.events_since(now), now)
        .await
    {
        Ok(e) => e.into_iter().unzip(),
        Err(e) => {
            hooks.log(&format!(
                    "ci-docker-prune: cannot read the daemon's events ({e}) — every image counts as used now"
                ));
            state.cursor = None;
            (Vec::new(), Vec::new())
        }
    };
    let boot = boot_id();
    let observed = state.observe(&Observation {
        now,
        boot_id: boot.as_deref(),
        images: &images,
        services: &services,
        containers: &containers,
        events: &events,
        marks: Some(&marks),
    });
    if observed.future_stamps > 0 {
        hooks.log(&format!(
            "ci-docker-prune: usage state: {} time stamp(s) lay in the future of the daemon's clock ({}; a clock jumped back) — set to now",
            observed.future_stamps,
            crate::report::when(now)
        ));
    }
    if let Some(gap) = observed.gap.filter(|g| g.start.is_some()) {
        hooks.log(&format!(
            "ci-docker-prune: usage state: the daemon's events before {} are lost ({}; it keeps its last {}) — every image counts as used then",
            crate::report::when(gap.end),
            gap.cause.describe(),
            usage::DAEMON_EVENT_BUFFER
        ));
    }
    let keep = i64::try_from(cfg.evict_keep_recent.as_secs()).unwrap_or(i64::MAX);
    state.forget_repos_before(now.saturating_sub(keep.saturating_mul(2)));
    if rs.writable().is_some() {
        if let Err(e) = state.save(&path) {
            hooks.log(&format!("ci-docker-prune: {e}"));
        }
    }
    Ok(Some(state))
}

/// Remember (or forget) a gate that stops runs while the disk is over the threshold
/// ([`stall`]); warn, and report it, once it lasted `gate_stall_warn_after`. `closed`: the
/// gate that stopped this run (`disk`, or none, ends a stall). A dry run reads the record and
/// writes nothing; a record that cannot be written is said in the log, never fatal.
fn note_stall(
    cfg: &Config,
    rs: &RunState,
    closed: Option<Gate>,
    detail: &str,
    hooks: &mut dyn Hooks,
    progress: &mut Progress,
) {
    let Some(dir) = rs.dir.as_deref() else {
        return;
    };
    let now = now();
    let prev = stall::load(dir);
    let next = stall::next(prev.as_ref(), now, closed);
    if let Some(s) = &next {
        let warn_after = cfg.gate_stall_warn_after.as_secs();
        if let Some(seconds) = stall::overdue(s, now, warn_after) {
            let stalled = Stalled {
                gate: s.gate,
                since: s.since,
                seconds,
                runs: s.runs,
            };
            hooks.log(&stalled_line(&stalled, detail));
            progress.stalled = Some(stalled);
        }
    }
    let Some(dir) = rs.writable().filter(|_| prev.is_some() || next.is_some()) else {
        return;
    };
    if let Err(e) = stall::save(dir, next.as_ref()) {
        hooks.log(&state_lines::write_failed(
            &dir.join(stall::STATE_FILE),
            &e.to_string(),
        ));
    }
}

/// What a run did so far: kept across an error, so an aborted run still reports it.
#[derive(Debug, Default)]
struct Progress {
    /// The latest evaluation of the gates.
    gates: Vec<GateDecision>,
    skipped_by: Option<Gate>,
    removed: Removed,
    reclaimed: u64,
    /// Every id the daemon reported deleted (an image's untagged parents go with it).
    deleted: HashSet<String>,
    failures: Vec<Failure>,
    incidents: Vec<Incident>,
    /// Why each image in `removed.images` went.
    image_reasons: Vec<RemovedImage>,
    /// The removal steps have started (a dry run: the plan was shown).
    started: bool,
    /// A gate has kept the prune from acting under disk pressure for too long.
    stalled: Option<Stalled>,
    /// The eviction tier's queue length, once a plan was made with the tier on.
    evict_queue: Option<u64>,
    /// The last removal step that ran.
    last_step: Option<Step>,
    /// The run pruned its way below the threshold (it stopped there, outcome `pruned`).
    below_threshold_after: Option<BelowThreshold>,
}

impl Progress {
    fn gated(&mut self, check: GateCheck) -> Option<Gate> {
        self.gates = check.decisions;
        self.skipped_by = check.closed_by;
        check.closed_by
    }

    fn record(&mut self, step: Step, id: &str, done: Done) {
        let (ids, bytes) = done.removed();
        self.removed.of_step(step).extend_from_slice(ids);
        self.deleted.extend(ids.iter().cloned());
        self.reclaimed += bytes;
        match done {
            Done::Removed { untagged, .. } if !untagged.is_empty() => {
                self.incidents.push(Incident {
                    image: id.to_string(),
                    untagged,
                })
            }
            Done::Failed(error) => self.failures.push(Failure {
                step,
                id: id.to_string(),
                error,
            }),
            _ => {}
        }
    }

    fn report(self, outcome: Outcome, error: Option<String>) -> Report {
        let mut r = Report::new(outcome, self.gates);
        r.skipped_by = self.skipped_by;
        r.removed = self.removed;
        r.reclaimed_bytes = self.reclaimed;
        r.failures = self.failures;
        r.incidents = self.incidents;
        r.image_reasons = self.image_reasons;
        r.stalled = self.stalled;
        r.evict_queue = self.evict_queue;
        r.below_threshold_after = self.below_threshold_after;
        r.error = error;
        r.settle()
    }
}

/// Run the policy. The Docker daemon is contacted only once the `disk` gate passes. Every
/// ending is a report: its outcome is `error` (exit 1) when the run was stopped by an error,
/// an item failed or an image was untagged by its delete.
pub async fn run(cfg: &Config, dry_run: bool, hooks: &mut dyn Hooks) -> Report {
    let mut progress = Progress::default();
    let mut rs = RunState::open(cfg, dry_run, hooks);
    // the client of a run that contacted the daemon: it lists the cache at the end
    let mut contacted = None;
    let result = async {
        // A state dir that does not know the daemon's roots yet learns them once (the one
        // contact with the daemon a run below the threshold may make; a daemon that does not
        // answer leaves the `--path`s measured alone) — only when it can keep them (or in a
        // dry run, which a person starts): a directory that cannot be written would make
        // every run contact the daemon.
        // Remembered roots that may be stale (a root gone or replaced, a config file changed,
        // the daemon started again: docs/prune-policy.md) are asked for again the same way.
        let mut learnt = false;
        let may_keep = dry_run || rs.writable().is_some();
        if let Some(why) = rs.stale.clone() {
            hooks.log(&state_lines::stale(&why, may_keep));
        }
        if rs.dir.is_some() && (rs.roots.is_none() || rs.stale.is_some()) && may_keep {
            let measuring = if rs.roots.is_some() {
                "measuring the --path(s) and the remembered roots"
            } else {
                "measuring the --path(s) only"
            };
            match DockerClient::connect(&cfg.docker_host).await {
                Ok(client) => {
                    learnt = true;
                    let was_stale = rs.stale.is_some();
                    match rs.learn_roots(&client, hooks).await {
                        Ok(()) if was_stale => {
                            if let Some(r) = &rs.roots {
                                hooks.log(&format!(
                                    "ci-docker-prune: the daemon keeps its data now: {}",
                                    r.describe()
                                ));
                            }
                        }
                        Ok(()) => {}
                        Err(e) => hooks.log(&format!(
                            "ci-docker-prune: cannot learn where the daemon keeps its data ({e}): {measuring}"
                        )),
                    }
                }
                Err(e) => hooks.log(&format!(
                    "ci-docker-prune: cannot learn where the daemon keeps its data ({e}): {measuring}"
                )),
            }
        }
        let disk = check_disk_with(cfg, rs.roots.as_ref())?;
        hooks.log(&gate_line(&disk));
        progress.gates = vec![disk.clone()];
        if !disk.pass {
            progress.skipped_by = Some(Gate::Disk);
            note_stall(cfg, &rs, None, &disk.detail, hooks, &mut progress);
            // Below the threshold the daemon is never contacted (a stopped or socket-activated
            // Docker stays as it is): usage is learnt at the runs that go on.
            return Ok(Outcome::Skipped);
        }
        let client = contacted.insert(DockerClient::connect(&cfg.docker_host).await?);
        // a run that contacts the daemon refreshes what it knows of the daemon's roots
        if !learnt && rs.dir.is_some() {
            rs.learn_roots(client, hooks).await?;
        }
        steps(cfg, &rs, client, disk, dry_run, hooks, &mut progress).await
    }
    .await;
    let mut report = finish(result, progress, hooks);
    end_facts(cfg, rs.roots.as_ref(), contacted.as_ref(), &mut report).await;
    report
}

/// What the report says of the host at the end of the run (for `--metrics-file`): every
/// measured filesystem and, when the run contacted the daemon, the cache. Never fatal.
async fn end_facts(
    cfg: &Config,
    roots: Option<&DaemonRoots>,
    client: Option<&DockerClient>,
    report: &mut Report,
) {
    report.disks = usages(cfg, roots)
        .map(|(u, _)| u.iter().map(crate::report::DiskReport::from).collect())
        .unwrap_or_default();
    if let Some(client) = client {
        report.cache = client
            .list_images()
            .await
            .ok()
            .map(|i| crate::report::CacheReport::of(&i));
    }
}

/// [`run`] on an existing client, after the `disk` gate passed.
pub async fn run_with(
    cfg: &Config,
    client: &DockerClient,
    disk: GateDecision,
    dry_run: bool,
    hooks: &mut dyn Hooks,
) -> Report {
    let mut progress = Progress::default();
    let rs = RunState::open(cfg, dry_run, hooks);
    let result = steps(cfg, &rs, client, disk, dry_run, hooks, &mut progress).await;
    finish(result, progress, hooks)
}

fn finish(
    result: Result<Outcome, PruneError>,
    progress: Progress,
    hooks: &mut dyn Hooks,
) -> Report {
    let started = progress.started;
    let report = match result {
        Ok(outcome) => progress.report(outcome, None),
        Err(e) => progress.report(Outcome::Error, Some(e.message())),
    };
    // A run stopped before its steps has said why: its gate line, or the error (the CLI
    // prints it). Once the steps started, the run is summed up.
    if started {
        hooks.log(&report.summary_line());
    }
    report
}

/// The other gates, the plan, then the plan shown (dry run) or executed.
#[allow(clippy::too_many_arguments)]
async fn steps(
    cfg: &Config,
    rs: &RunState,
    client: &DockerClient,
    disk: GateDecision,
    dry_run: bool,
    hooks: &mut dyn Hooks,
    progress: &mut Progress,
) -> Result<Outcome, PruneError> {
    let state = record_usage(cfg, rs, client, hooks).await?;
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
    let services = check.services.clone();
    let closed = check
        .decisions
        .iter()
        .find(|d| !d.pass)
        .map(|d| d.detail.clone());
    let closed_by = progress.gated(check);
    note_stall(
        cfg,
        rs,
        closed_by,
        closed.as_deref().unwrap_or(""),
        hooks,
        progress,
    );
    if closed_by.is_some() {
        return Ok(Outcome::Skipped);
    }
    let plan = make_plan_with(cfg, client, services, dry_run, state.as_ref()).await?;
    progress.evict_queue = cfg.evict.then_some(plan.evict.len() as u64);
    if dry_run {
        show(cfg, rs, client, &plan, hooks, progress).await?;
        Ok(Outcome::DryRun)
    } else {
        execute(cfg, rs, client, &plan, hooks, progress).await
    }
}

/// The dry run: every item of every step, as the real run would remove it. The eviction
/// tier's share is an estimate: the daemon's `Size` of each image (which counts layers shared
/// with images that stay, so a real run may go further down the queue) taken off the usage
/// the plan's removals leave.
async fn show(
    cfg: &Config,
    rs: &RunState,
    client: &DockerClient,
    plan: &Plan,
    hooks: &mut dyn Hooks,
    progress: &mut Progress,
) -> Result<(), PruneError> {
    for step in [Step::Containers, Step::Images, Step::BuildCache] {
        for item in step.items(plan, cfg.until) {
            for line in would_remove_lines(&item) {
                hooks.log(&line);
            }
        }
    }
    progress.removed = Removed::from(plan);
    progress.image_reasons = plan
        .images
        .iter()
        .map(|i| RemovedImage {
            id: i.id.clone(),
            reason: i.reason.clone(),
            bytes: i.size.max(0) as u64,
        })
        .collect();
    progress.reclaimed = plan.bytes();
    progress.started = true;
    if !cfg.evict {
        return Ok(());
    }
    if plan.evict.is_empty() {
        hooks.log(&evict_lines::nothing_queued());
        return Ok(());
    }
    let usage = match image_usages(rs, client).await? {
        Ok(u) => u,
        Err(why) => {
            hooks.log(&evict_lines::unmeasurable(&why, plan.evict.len()));
            return Ok(());
        }
    };
    let Some(max) = usage.into_iter().max_by_key(DiskUsage::percent) else {
        return Ok(());
    };
    let total = max.used + max.avail;
    let at = |used: u64| {
        DiskUsage {
            path: max.path.clone(),
            used,
            avail: total.saturating_sub(used),
        }
        .percent()
    };
    let mut used = max.used.saturating_sub(plan.bytes());
    let after = disk_gate(
        cfg.threshold,
        &[DiskUsage {
            path: max.path.clone(),
            used,
            avail: total.saturating_sub(used),
        }],
    );
    if !after.pass {
        hooks.log(&evict_lines::idle(&after, plan.evict.len()));
        return Ok(());
    }
    hooks.log(&evict_lines::start(
        &after,
        plan.evict.len(),
        cfg.evict_low_watermark,
    ));
    let mut shown = 0;
    for i in &plan.evict {
        if evict::reached(at(used), &evict_policy(cfg)) {
            break;
        }
        for line in would_remove_lines(&Item::Image(i)) {
            hooks.log(&line);
        }
        used = used.saturating_sub(i.size.max(0) as u64);
        progress.removed.images.push(i.id.clone());
        progress.image_reasons.push(RemovedImage {
            id: i.id.clone(),
            reason: i.reason.clone(),
            bytes: i.size.max(0) as u64,
        });
        progress.reclaimed += i.size.max(0) as u64;
        shown += 1;
    }
    if shown < plan.evict.len() {
        hooks.log(&evict_lines::rest(plan.evict.len() - shown));
    }
    Ok(())
}

/// The real run: the plan's steps in order, each re-gated right before it runs, every item
/// attempted (a failure is recorded and the run goes on). The eviction step is
/// [`evict_step`].
async fn execute(
    cfg: &Config,
    rs: &RunState,
    client: &DockerClient,
    plan: &Plan,
    hooks: &mut dyn Hooks,
    progress: &mut Progress,
) -> Result<Outcome, PruneError> {
    progress.started = true;
    for step in Step::ALL {
        if step == Step::Evict {
            if let Some(stop) = evict_step(cfg, rs, client, plan, hooks, progress).await? {
                return Ok(stop);
            }
            continue;
        }
        hooks.before_step(step);
        if let Some(stop) = regate(cfg, rs, client, hooks, progress).await? {
            return Ok(stop);
        }
        for item in step.items(plan, cfg.until) {
            remove_item(step, &item, client, None, hooks, progress).await;
        }
        progress.last_step = Some(step);
    }
    Ok(Outcome::Pruned)
}

/// Every gate again, right before a step: the outcome the run stops with when one closed.
/// A `disk` gate closed after the run removed something is the run's own doing (its removals
/// brought usage below the threshold): it stops there as `pruned`, keeping the gates that let
/// it prune, and says so ([`BelowThreshold`]). Any other closed gate stops it as `skipped`.
async fn regate(
    cfg: &Config,
    rs: &RunState,
    client: &DockerClient,
    hooks: &mut dyn Hooks,
    progress: &mut Progress,
) -> Result<Option<Outcome>, PruneError> {
    let check = check_gates_with(cfg, rs.roots.as_ref(), client).await?;
    if let (Some(Gate::Disk), Some(step)) = (check.closed_by, progress.last_step) {
        if !progress.removed.is_empty() {
            let below = BelowThreshold {
                step,
                detail: check.decisions[0].detail.clone(),
            };
            hooks.log(&below_threshold_line(&below, progress.evict_queue));
            progress.below_threshold_after = Some(below);
            return Ok(Some(Outcome::Pruned));
        }
    }
    if let Some(d) = check.decisions.iter().find(|d| !d.pass) {
        hooks.log(&gate_line(d));
    }
    Ok(progress.gated(check).map(|_| Outcome::Skipped))
}

/// Remove one item and record what it did (`fresh`: the eviction tier's re-check).
async fn remove_item(
    step: Step,
    item: &Item<'_>,
    client: &DockerClient,
    fresh: Option<&FreshRefs>,
    hooks: &mut dyn Hooks,
    progress: &mut Progress,
) -> Done {
    let done = match fresh {
        Some(f) => item.remove_fresh(client, &progress.deleted, f).await,
        None => item.remove(client, &progress.deleted).await,
    };
    for line in done_lines(item, &done) {
        hooks.log(&line);
    }
    if let Item::Image(i) = item {
        let (ids, bytes) = done.removed();
        for (n, id) in ids.iter().enumerate() {
            progress.image_reasons.push(RemovedImage {
                id: id.clone(),
                reason: i.reason.clone(),
                // the bytes the delete freed, counted once (on the image asked for)
                bytes: if n == 0 { bytes } else { 0 },
            });
        }
    }
    progress.record(step, item.id(), done.clone());
    done
}

/// Where the eviction tier measures: the filesystems that hold the daemon's image data
/// (Docker's data-root; with the containerd store also containerd's root), one entry per
/// filesystem. The `--path`s are not it: evicting an image lowers only the filesystem its
/// layers are on, so a `--path` full of other data would have the tier drain its queue for no
/// relief. The roots are the ones this run learnt, else asked for now (`GET /info`). An
/// error says why the tier cannot measure (a remote daemon whose data-root is not on this
/// host, say): then it evicts nothing.
async fn image_usages(
    rs: &RunState,
    client: &DockerClient,
) -> Result<Result<Vec<DiskUsage>, String>, PruneError> {
    image_usages_synced(rs, client, false).await
}

/// [`image_usages`]; with `sync`, each filesystem is first asked to commit what it has pending
/// (`syncfs`: btrfs then counts the extents a delete freed; [`crate::settle`]).
async fn image_usages_synced(
    rs: &RunState,
    client: &DockerClient,
    sync: bool,
) -> Result<Result<Vec<DiskUsage>, String>, PruneError> {
    let roots = match &rs.roots {
        Some(r) => r.clone(),
        None => crate::roots::of_host(&client.info_raw().await?),
    };
    if sync {
        for p in roots.paths() {
            sync_fs(&p);
        }
    }
    Ok(measure_image_fs(&roots))
}

/// `statfs(2)`'s `f_type` of the filesystem of `path`, if it can be read.
fn fs_type(path: &Path) -> Option<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a zeroed struct the call fills.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    #[allow(clippy::unnecessary_cast)]
    (rc == 0).then_some(st.f_type as i64)
}

/// `syncfs(2)` on the filesystem of `path` (best effort: a failure only means the next sample
/// may not count everything freed yet).
fn sync_fs(path: &Path) {
    use std::os::fd::AsRawFd;
    if let Ok(dir) = std::fs::File::open(path) {
        // SAFETY: a valid open descriptor for the duration of the call.
        unsafe {
            libc::syncfs(dir.as_raw_fd());
        }
    }
}

/// The image filesystems' usage once the frees of a removal have settled ([`crate::settle`]):
/// `before` the used bytes before it, `expected` the bytes the daemon says it freed (0: it
/// removed nothing, one sample). Also the time waited (for the log when it was long).
async fn settled_image_usages(
    rs: &RunState,
    client: &DockerClient,
    before: u64,
    expected: u64,
) -> Result<Result<(Vec<DiskUsage>, std::time::Duration), String>, PruneError> {
    use crate::settle::{settled, Sample, SETTLE};
    let start = std::time::Instant::now();
    let mut samples = Vec::new();
    loop {
        let usage = match image_usages_synced(rs, client, expected > 0).await? {
            Ok(u) => u,
            Err(why) => return Ok(Err(why)),
        };
        samples.push(Sample {
            at: start.elapsed(),
            used: used_bytes(&usage),
        });
        if expected == 0 || settled(before, expected, &samples, &SETTLE) {
            return Ok(Ok((usage, start.elapsed())));
        }
        tokio::time::sleep(SETTLE.poll).await;
    }
}

/// [`image_usages`] for known roots.
fn measure_image_fs(roots: &DaemonRoots) -> Result<Vec<DiskUsage>, String> {
    use std::os::unix::fs::MetadataExt;
    let paths = roots.paths();
    if paths.is_empty() {
        return Err("the daemon reports no data-root".into());
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for p in paths {
        let dev = std::fs::metadata(&p)
            .map_err(|e| format!("{} cannot be measured here: {e}", p.display()))?
            .dev();
        if seen.insert(dev) {
            out.push(disk_usage(&p).map_err(|e| format!("{}: {e}", p.display()))?);
        }
    }
    Ok(out)
}

/// The services (spec and previous spec) and containers as they are now: two requests.
/// `None` when the services cannot be listed (a worker, a swarm without a leader): what the
/// tier would delete cannot be checked, so it stops.
async fn fresh_refs(client: &DockerClient) -> Result<Option<FreshRefs>, PruneError> {
    let services = match client.list_services().await? {
        Swarm::Listed(s) => s,
        Swarm::NoSwarm => Vec::new(),
        Swarm::Worker | Swarm::Unavailable(_) => return Ok(None),
    };
    let containers = client.list_containers().await?;
    Ok(Some(FreshRefs {
        services: services
            .iter()
            .flat_map(|s| s.images().map(|r| (s.name.clone(), r.to_string())))
            .collect(),
        containers: containers
            .into_iter()
            .map(|c| (c.image_id, c.name))
            .collect(),
    }))
}

fn used_bytes(u: &[DiskUsage]) -> u64 {
    u.iter().map(|u| u.used).sum()
}

/// The eviction tier, after the leftovers: only while the filesystem(s) of the image data
/// ([`image_usages`]) are at or above the threshold; removes from the front of the queue,
/// re-measuring after each removal, and stops at the low watermark, or when
/// [`evict::NO_RELIEF_STOP`] removals in a row lowered usage by less than
/// [`evict::MIN_RELIEF_BYTES`] each (evicting stopped helping: the space is held by something
/// else). The outcome the run stops with when a gate closed before it ([`regate`]).
async fn evict_step(
    cfg: &Config,
    rs: &RunState,
    client: &DockerClient,
    plan: &Plan,
    hooks: &mut dyn Hooks,
    progress: &mut Progress,
) -> Result<Option<Outcome>, PruneError> {
    if !cfg.evict {
        return Ok(None);
    }
    if plan.evict.is_empty() {
        hooks.log(&evict_lines::nothing_queued());
        return Ok(None);
    }
    let measure = |rs| image_usages(rs, client);
    let usage = match measure(rs).await? {
        Ok(u) => u,
        Err(why) => {
            hooks.log(&evict_lines::unmeasurable(&why, plan.evict.len()));
            return Ok(None);
        }
    };
    let after = disk_gate(cfg.threshold, &usage);
    if !after.pass {
        hooks.log(&evict_lines::idle(&after, plan.evict.len()));
        return Ok(None);
    }
    hooks.log(&evict_lines::start(
        &after,
        plan.evict.len(),
        cfg.evict_low_watermark,
    ));
    hooks.before_step(Step::Evict);
    if let Some(stop) = regate(cfg, rs, client, hooks, progress).await? {
        return Ok(Some(stop));
    }
    let p = evict_policy(cfg);
    let mut no_relief = 0usize;
    // On a filesystem that frees later (btrfs, zfs; one filesystem holds the image data) a
    // removal's bytes count as freed before the filesystem shows them ([`crate::settle`]).
    let deferring = match usage.as_slice() {
        [one] => fs_type(&one.path).filter(|t| crate::settle::defers_frees(*t)),
        _ => None,
    };
    let start_used = used_bytes(&usage);
    let mut said_freed = 0u64;
    let mut measured = usage.clone();
    let mut usage = usage;
    for item in Step::Evict.items(plan, cfg.until) {
        if evict::reached(max_percent(&usage), &p) {
            break;
        }
        // Re-check the queue against what references images now: a service created (or a
        // stack started, a container run) since the plan was made keeps its image.
        let fresh = match fresh_refs(client).await? {
            Some(f) => f,
            None => {
                hooks.log(&evict_lines::unverifiable());
                return Ok(None);
            }
        };
        let before = used_bytes(&usage);
        let done = remove_item(Step::Evict, &item, client, Some(&fresh), hooks, progress).await;
        let freed = done.removed().1;
        let now = if deferring.is_some() {
            // what the delete freed may be counted by the filesystem only later
            settled_image_usages(rs, client, used_bytes(&measured), freed)
                .await?
                .map(|(u, _)| u)
        } else {
            measure(rs).await?
        };
        usage = match now {
            Ok(u) => u,
            Err(why) => {
                hooks.log(&evict_lines::unmeasurable(&why, 0));
                return Ok(None);
            }
        };
        measured = usage.clone();
        if deferring.is_some() {
            said_freed = said_freed.saturating_add(freed);
            if let [one] = usage.as_slice() {
                usage = vec![crate::settle::with_pending(one, start_used, said_freed)];
            }
        }
        if matches!(done, Done::Removed { .. }) {
            if evict::relieved(before, used_bytes(&usage)) {
                no_relief = 0;
            } else {
                no_relief += 1;
                if no_relief >= evict::NO_RELIEF_STOP {
                    hooks.log(&evict_lines::no_relief(&usage, no_relief));
                    return Ok(None);
                }
            }
        }
    }
    if let ([shown], [seen]) = (usage.as_slice(), measured.as_slice()) {
        if shown.used < seen.used {
            hooks.log(&evict_lines::pending(seen, shown, deferring.unwrap_or(0)));
        }
    }
    let max = usage.iter().max_by_key(|u| u.percent());
    if let Some(m) = max {
        if evict::reached(m.percent(), &p) {
            hooks.log(&evict_lines::reached(m, cfg.evict_low_watermark));
        } else {
            hooks.log(&evict_lines::exhausted(m, cfg.evict_low_watermark));
        }
    }
    Ok(None)
}
