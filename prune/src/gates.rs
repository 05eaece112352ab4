//! The three gates, in contract order: `disk`, `runs`, `converge`.
//!
//! Each gate is a pure function of what was measured, returning a [`GateDecision`] with a human
//! reason; measuring is separate ([`disk_usage`] via `statvfs(3)`, the services/tasks lists from
//! [`crate::docker`]) so the decisions are unit-testable. Gating costs a constant number of API
//! calls: services are listed once and tasks once (desired-state filter), never per service.
//!
//! What the swarm cannot tell closes the gate (fail closed): only a node that is not part of a
//! swarm has no services. A worker cannot list the swarm's services, so it cannot rule out a
//! live CI run: `runs` closes there (naming a run-stack task it runs itself, if any); a swarm
//! with no leader, a locked one or any other error answer closes the gate with the daemon's
//! message.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::answers::{ContainerInfo, ServiceInfo, ServiceMode, Swarm, TaskInfo};

/// The gates, in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gate {
    /// Disk under pressure: max usage over the paths ≥ threshold.
    Disk,
    /// No live CI run stack.
    Runs,
    /// No swarm service converging.
    Converge,
}

impl Gate {
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::Disk => "disk",
            Gate::Runs => "runs",
            Gate::Converge => "converge",
        }
    }
}

impl std::fmt::Display for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One gate's verdict: `pass` means "pruning may go on". Its log line is worded in
/// [`crate::report::gate_line`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateDecision {
    pub gate: Gate,
    pub pass: bool,
    pub detail: String,
}

/// Measured usage of one file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskUsage {
    pub path: PathBuf,
    /// Bytes in use.
    pub used: u64,
    /// Bytes available to unprivileged users.
    pub avail: u64,
}

impl DiskUsage {
    /// Percent used, rounded up, as `df` computes it: used / (used + avail).
    pub fn percent(&self) -> u8 {
        let total = self.used as u128 + self.avail as u128;
        if total == 0 {
            return 0;
        }
        let pct = (self.used as u128 * 100).div_ceil(total);
        pct.min(100) as u8
    }
}

/// `statvfs(3)` of `path`.
pub fn disk_usage(path: &Path) -> std::io::Result<DiskUsage> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated string; `st` is a plain C struct that statvfs fills.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = if st.f_frsize > 0 {
        st.f_frsize
    } else {
        st.f_bsize
    } as u64;
    let blocks = st.f_blocks as u64;
    let bfree = st.f_bfree as u64;
    let bavail = st.f_bavail as u64;
    Ok(DiskUsage {
        path: path.to_path_buf(),
        used: blocks.saturating_sub(bfree) * frsize,
        avail: bavail * frsize,
    })
}

/// `disk`: passes when the highest usage over `usages` is ≥ `threshold`.
pub fn disk_gate(threshold: u8, usages: &[DiskUsage]) -> GateDecision {
    let Some(max) = usages.iter().max_by_key(|u| u.percent()) else {
        return GateDecision {
            gate: Gate::Disk,
            pass: false,
            detail: "no path measured".into(),
        };
    };
    let pct = max.percent();
    let pass = pct >= threshold;
    let cmp = if pass { "≥" } else { "<" };
    let others: Vec<String> = usages
        .iter()
        .filter(|u| u.path != max.path)
        .map(|u| format!("{} at {}%", u.path.display(), u.percent()))
        .collect();
    let others = if others.is_empty() {
        String::new()
    } else {
        format!("; {}", others.join(", "))
    };
    GateDecision {
        gate: Gate::Disk,
        pass,
        detail: format!(
            "{} at {pct}% ({cmp} {threshold}%{others})",
            max.path.display()
        ),
    }
}

/// `runs`: passes when no service name matches the run-stack pattern, or when the node is not
/// part of a swarm. On a worker it is closed (a worker cannot list the swarm's services);
/// `local` (the node's containers) lets it name a run-stack task that runs on this node.
pub fn runs_gate(
    pattern: &Regex,
    services: &Swarm<Vec<ServiceInfo>>,
    local: &[ContainerInfo],
) -> GateDecision {
    let closed = |detail: String| GateDecision {
        gate: Gate::Runs,
        pass: false,
        detail,
    };
    let services = match services {
        Swarm::Listed(s) => s,
        Swarm::NoSwarm => {
            return GateDecision {
                gate: Gate::Runs,
                pass: true,
                detail: "no live run stack (not part of a swarm: no services)".into(),
            }
        }
        Swarm::Worker => {
            let tasks: Vec<&str> = local
                .iter()
                .filter(|c| !matches!(c.state.as_str(), "exited" | "dead"))
                .filter_map(|c| c.service.as_deref())
                .collect();
            let mut live: Vec<&str> = tasks
                .iter()
                .copied()
                .filter(|s| pattern.is_match(s))
                .collect();
            live.sort_unstable();
            live.dedup();
            return closed(if live.is_empty() {
                format!(
                    "swarm worker: only a manager can list the swarm's services, so a live run \
                     stack cannot be ruled out (fail closed; {} swarm task(s) on this node, none \
                     matches {})",
                    tasks.len(),
                    pattern.as_str()
                )
            } else {
                format!(
                    "run stack live on this swarm worker: {} (task(s) on this node match {}; \
                     a worker cannot list the swarm's services)",
                    list_some(&live),
                    pattern.as_str()
                )
            });
        }
        Swarm::Unavailable(msg) => {
            return closed(format!(
                "swarm services cannot be listed, a live run stack cannot be ruled out \
                 (fail closed): {msg}"
            ))
        }
    };
    let live: Vec<&str> = services
        .iter()
        .filter(|s| pattern.is_match(&s.name))
        .map(|s| s.name.as_str())
        .collect();
    if live.is_empty() {
        GateDecision {
            gate: Gate::Runs,
            pass: true,
            detail: format!(
                "no live run stack (0 of {} services match {})",
                services.len(),
                pattern.as_str()
            ),
        }
    } else {
        closed(format!(
            "run stack live: {} ({} of {} services match {})",
            list_some(&live),
            live.len(),
            services.len(),
            pattern.as_str()
        ))
    }
}

/// Observed task states that mean work in flight: the task is being created, scheduled,
/// shipped to its node, its image pulled (`preparing`) or its container started (`starting`,
/// which lasts until a healthcheck first passes).
pub const IN_FLIGHT_STATES: [&str; 8] = [
    "new",
    "allocated",
    "pending",
    "assigned",
    "accepted",
    "preparing",
    "ready",
    "starting",
];

/// Task states that end an attempt in failure: the next attempt in the same slot is a retry.
const FAILED_STATES: [&str; 2] = ["failed", "rejected"];

/// A pending task the scheduler cannot place (`Status.Err` of a constraint, a resource or a
/// platform no node meets): it waits for a node, not for a pull.
fn unplaceable(t: &TaskInfo) -> bool {
    t.state == "pending" && t.err.contains("no suitable node")
}

/// A task the orchestrator still wants (its current attempt), as opposed to an ended one kept
/// as history.
fn wanted(t: &TaskInfo) -> bool {
    matches!(t.desired_state.as_str(), "running" | "ready")
}

/// How one service stands for the `converge` gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Convergence {
    /// Nothing in flight: every task runs or has ended.
    Settled,
    /// Work in flight: an update in progress, a task being scheduled, pulled or started, a
    /// replicated service whose tasks are not created yet. The text says which.
    InFlight(String),
    /// Tasks in an in-flight state that wait for something no pull will bring: a node that
    /// can take them, or a retry after a failed attempt (a pull that failed — "no space left
    /// on device" included — or a crash). They do not hold the gate; the text says why.
    Stuck(String),
}

/// The [`Convergence`] of `service` from its tasks (every desired state: the history tells a
/// retry from a first attempt). Tasks are grouped by slot (global services: by node); in each
/// group the ended task with the highest version index is the last attempt.
pub fn convergence(service: &ServiceInfo, tasks: &[&TaskInfo]) -> Convergence {
    if let Some(st) = service.update_state.as_deref() {
        if st == "updating" || st == "rollback_started" {
            return Convergence::InFlight(format!("update in progress ({st})"));
        }
    }
    if tasks.is_empty() {
        // A replicated service with replicas and no task at all was created a moment ago: its
        // tasks are about to be. A global service with none has no node it may run on.
        return match service.mode {
            ServiceMode::Replicated(n) if n > 0 => {
                Convergence::InFlight("no task created yet".into())
            }
            _ => Convergence::Settled,
        };
    }
    let mut groups: HashMap<(u64, &str), Vec<&TaskInfo>> = HashMap::new();
    for t in tasks {
        let node = if t.slot == 0 { t.node_id.as_str() } else { "" };
        groups.entry((t.slot, node)).or_default().push(t);
    }
    let mut keys: Vec<&(u64, &str)> = groups.keys().collect();
    keys.sort_unstable();
    let mut stuck = None;
    for key in keys {
        let group = &groups[key];
        let last_ended = group
            .iter()
            .filter(|t| !wanted(t))
            .max_by_key(|t| t.version);
        for t in group
            .iter()
            .filter(|t| wanted(t) && IN_FLIGHT_STATES.contains(&t.state.as_str()))
        {
            let which = if key.0 > 0 {
                format!("task {}", key.0)
            } else {
                "task".to_string()
            };
            if unplaceable(t) {
                stuck.get_or_insert(format!("{which} {}: {}", t.state, t.err));
            } else if let Some(f) = last_ended.filter(|e| FAILED_STATES.contains(&e.state.as_str()))
            {
                stuck.get_or_insert(format!(
                    "{which} {}, retrying after a failed attempt ({}: {})",
                    t.state,
                    f.state,
                    if f.err.is_empty() {
                        "no error given"
                    } else {
                        &f.err
                    }
                ));
            } else {
                return Convergence::InFlight(format!("{which} {}", t.state));
            }
        }
    }
    match stuck {
        Some(why) => Convergence::Stuck(why),
        None => Convergence::Settled,
    }
}

/// `converge`: passes when no service has work in flight ([`convergence`]): no update in
/// progress, no task being scheduled, pulled or started for a first attempt. Settled tasks —
/// running, completed (a one-shot with restart condition `none`, exit 0 under `on-failure`),
/// failed — and tasks that wait for what no pull brings (no node can take them, a retry after
/// a failed attempt) do not hold it; the detail names them. Passes when the node is not part
/// of a swarm; tasks the swarm cannot list close it.
pub fn converge_gate(
    services: &Swarm<Vec<ServiceInfo>>,
    tasks: &Swarm<Vec<TaskInfo>>,
) -> GateDecision {
    let closed = |detail: String| GateDecision {
        gate: Gate::Converge,
        pass: false,
        detail,
    };
    let services = match services {
        Swarm::Listed(s) => s,
        Swarm::NoSwarm => {
            return GateDecision {
                gate: Gate::Converge,
                pass: true,
                detail: "nothing to converge (not part of a swarm)".into(),
            }
        }
        Swarm::Worker | Swarm::Unavailable(_) => {
            return closed("swarm services cannot be listed (fail closed)".into())
        }
    };
    let tasks = match tasks {
        Swarm::Listed(t) => t,
        Swarm::Unavailable(msg) => {
            return closed(format!("swarm tasks cannot be listed (fail closed): {msg}"))
        }
        Swarm::NoSwarm | Swarm::Worker => {
            return closed(
                "swarm tasks cannot be listed: the node left the swarm or was demoted since \
                 its services were listed (fail closed)"
                    .into(),
            )
        }
    };
    let mut per: HashMap<&str, Vec<&TaskInfo>> = HashMap::new();
    for t in tasks {
        per.entry(t.service_id.as_str()).or_default().push(t);
    }
    let mut converging = Vec::new();
    let mut stuck = Vec::new();
    for s in services {
        let of = per.get(s.id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        match convergence(s, of) {
            Convergence::Settled => {}
            Convergence::InFlight(why) => converging.push(format!("{} {why}", s.name)),
            Convergence::Stuck(why) => stuck.push(format!("{} {why}", s.name)),
        }
    }
    if !converging.is_empty() {
        return closed(format!("service converging: {}", list_some(&converging)));
    }
    let detail = if stuck.is_empty() {
        format!("all {} services converged", services.len())
    } else {
        format!(
            "no service converging ({} services; not waited for: {})",
            services.len(),
            list_some(&stuck)
        )
    };
    GateDecision {
        gate: Gate::Converge,
        pass: true,
        detail,
    }
}

fn list_some<S: AsRef<str>>(items: &[S]) -> String {
    const SHOW: usize = 3;
    let shown: Vec<&str> = items.iter().take(SHOW).map(AsRef::as_ref).collect();
    if items.len() > SHOW {
        format!("{} (+{} more)", shown.join(", "), items.len() - SHOW)
    } else {
        shown.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_RUN_STACK_PATTERN;
    use crate::report::gate_line;

    fn usage(path: &str, used: u64, avail: u64) -> DiskUsage {
        DiskUsage {
            path: path.into(),
            used,
            avail,
        }
    }

    fn svc(id: &str, name: &str, mode: ServiceMode) -> ServiceInfo {
        ServiceInfo {
            id: id.into(),
            name: name.into(),
            mode,
            update_state: None,
            image: None,
            previous_image: None,
        }
    }

    /// A task wanted running in slot 1 of `service`.
    fn task(service: &str, state: &str) -> TaskInfo {
        at(service, 1, "running", state, "", 10)
    }

    fn at(service: &str, slot: u64, desired: &str, state: &str, err: &str, v: u64) -> TaskInfo {
        TaskInfo {
            service_id: service.into(),
            slot,
            node_id: "node1".into(),
            desired_state: desired.into(),
            state: state.into(),
            err: err.into(),
            version: v,
        }
    }

    #[test]
    fn disk_below_threshold_keeps_cache_with_the_contract_line() {
        let d = disk_gate(80, &[usage("/", 31, 69)]);
        assert!(!d.pass);
        assert_eq!(d.detail, "/ at 31% (< 80%)");
        assert_eq!(
            gate_line(&d),
            "ci-docker-prune: / at 31% (< 80%) — keeping local image cache, nothing to do"
        );
    }

    #[test]
    fn disk_at_threshold_passes_and_max_path_counts() {
        let d = disk_gate(80, &[usage("/", 31, 69), usage("/var/lib/docker", 80, 20)]);
        assert!(d.pass);
        assert_eq!(d.detail, "/var/lib/docker at 80% (≥ 80%; / at 31%)");
        assert!(disk_gate(0, &[usage("/", 0, 100)]).pass);
        assert!(!disk_gate(100, &[usage("/", 99, 1)]).pass);
        assert!(!disk_gate(80, &[]).pass);
    }

    #[test]
    fn percent_rounds_up_like_df() {
        assert_eq!(usage("/", 1, 199).percent(), 1);
        assert_eq!(usage("/", 0, 0).percent(), 0);
        assert_eq!(usage("/", 100, 0).percent(), 100);
    }

    #[test]
    fn statvfs_of_root_and_missing_path() {
        let u = disk_usage(Path::new("/")).unwrap();
        assert!(u.used > 0);
        let e = disk_usage(Path::new("/definitely/not/here")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }

    fn listed<T: Clone>(t: &[T]) -> Swarm<Vec<T>> {
        Swarm::Listed(t.to_vec())
    }

    fn task_container(service: Option<&str>, state: &str) -> ContainerInfo {
        ContainerInfo {
            id: "c".into(),
            name: "n".into(),
            state: state.into(),
            image_id: "sha256:i".into(),
            created: 0,
            service: service.map(str::to_string),
            finished: None,
        }
    }

    #[test]
    fn runs_gate_closes_on_a_matching_service() {
        let re = Regex::new(DEFAULT_RUN_STACK_PATTERN).unwrap();
        let services = vec![
            svc("1", "traefik_app", ServiceMode::Replicated(1)),
            svc(
                "2",
                "ab1-0f3c9e_ci_commoninternet_net_app",
                ServiceMode::Replicated(1),
            ),
        ];
        let d = runs_gate(&re, &listed(&services), &[]);
        assert!(!d.pass);
        assert!(d.detail.contains("ab1-0f3c9e_ci_commoninternet_net_app"));
        assert!(gate_line(&d).ends_with("never prune during a CI run, nothing to do"));
        assert!(runs_gate(&re, &listed(&services[..1]), &[]).pass);
        assert!(runs_gate(&re, &listed(&[]), &[]).pass);
    }

    #[test]
    fn only_a_node_outside_any_swarm_has_no_services() {
        let re = Regex::new(DEFAULT_RUN_STACK_PATTERN).unwrap();
        let none: Swarm<Vec<ServiceInfo>> = Swarm::NoSwarm;
        let d = runs_gate(&re, &none, &[]);
        assert!(d.pass, "{d:?}");
        assert_eq!(
            d.detail,
            "no live run stack (not part of a swarm: no services)"
        );
        assert!(converge_gate(&none, &Swarm::NoSwarm).pass);
        // a worker: closed, whether or not it runs a run-stack task itself
        let ci = "ab1-0f3c9e_ci_commoninternet_net_app";
        let local = [
            task_container(Some(ci), "running"),
            task_container(Some("traefik_app"), "running"),
            task_container(None, "running"),
        ];
        let d = runs_gate(&re, &Swarm::Worker, &local);
        assert!(!d.pass);
        assert!(
            d.detail
                .starts_with(&format!("run stack live on this swarm worker: {ci} (")),
            "{}",
            d.detail
        );
        let d = runs_gate(&re, &Swarm::Worker, &local[1..]);
        assert!(!d.pass);
        assert!(
            d.detail
                .starts_with("swarm worker: only a manager can list")
                && d.detail
                    .contains("fail closed; 1 swarm task(s) on this node"),
            "{}",
            d.detail
        );
        // an exited run-stack task is history, not a live run (the worker still fails closed)
        let d = runs_gate(&re, &Swarm::Worker, &[task_container(Some(ci), "exited")]);
        assert!(
            !d.pass && d.detail.contains("0 swarm task(s)"),
            "{}",
            d.detail
        );
        // no leader, locked, ...: closed with the daemon's message
        let msg = "rpc error: code = Unknown desc = The swarm does not have a leader.";
        let d = runs_gate(&re, &Swarm::Unavailable(msg.into()), &[]);
        assert!(!d.pass);
        assert!(d.detail.ends_with(msg), "{}", d.detail);
        let d = converge_gate(&listed(&[]), &Swarm::Unavailable(msg.into()));
        assert!(!d.pass);
        assert!(d.detail.ends_with(msg), "{}", d.detail);
        assert!(!converge_gate(&listed(&[]), &Swarm::Worker).pass);
        assert!(!converge_gate(&Swarm::Worker, &listed(&[])).pass);
    }

    #[test]
    fn converge_gate_waits_only_for_work_in_flight() {
        let services = vec![
            svc("a", "web", ServiceMode::Replicated(2)),
            svc("b", "idle", ServiceMode::Replicated(0)),
            svc("c", "agent", ServiceMode::Global),
            svc("d", "job", ServiceMode::Job),
        ];
        let mut ok = vec![
            task("a", "running"),
            at("a", 2, "running", "running", "", 11),
            at("c", 0, "running", "running", "", 12),
            task("d", "complete"),
        ];
        let services = listed(&services);
        let d = converge_gate(&services, &listed(&ok));
        assert!(d.pass, "{d:?}");
        assert_eq!(d.detail, "all 4 services converged");
        // every in-flight state of a first attempt holds it, in any mode (a job pulling too)
        for state in IN_FLIGHT_STATES {
            for id in ["a", "c", "d"] {
                let mut t = ok.clone();
                t.push(at(id, 3, "running", state, "", 20));
                let d = converge_gate(&services, &listed(&t));
                assert!(!d.pass, "{id} {state}: {d:?}");
                assert!(
                    d.detail.starts_with("service converging: ")
                        && d.detail.ends_with(&format!("task 3 {state}")),
                    "{}",
                    d.detail
                );
            }
        }
        // the wording: the task's slot and state
        ok[1] = at("a", 2, "running", "preparing", "", 11);
        let d = converge_gate(&services, &listed(&ok));
        assert_eq!(d.detail, "service converging: web task 2 preparing");
        // a replicated service whose tasks are not created yet is converging; a global one
        // with no node to run on, or one scaled to zero, is not
        let d = converge_gate(&services, &listed(&[]));
        assert_eq!(d.detail, "service converging: web no task created yet");
        let none = listed(&[
            svc("c", "agent", ServiceMode::Global),
            svc("b", "idle", ServiceMode::Replicated(0)),
        ]);
        assert!(converge_gate(&none, &listed(&[])).pass);
    }

    /// The task listing measured on Docker 20.10 (the sandbox, `GET /tasks`, 15 s after
    /// `service create`): slot, desired state, state, error, as the daemon showed them.
    #[test]
    fn settled_services_never_hold_the_gate() {
        let nss = "no suitable node (scheduling constraints not satisfied on 1 node)";
        let nsi = "No such image: 127.0.0.1:5000/ccci-nope/x:1";
        let enospc = "failed to register layer: Error processing tar file(exit status 1): write /data/blob: no space left on device";
        let services = listed(&[
            svc("o", "oneshot", ServiceMode::Replicated(1)),
            svc("f", "onfail0", ServiceMode::Replicated(1)),
            svc("u", "unplaceable", ServiceMode::Replicated(1)),
            svc("p", "pullfail", ServiceMode::Replicated(1)),
            svc("r", "run", ServiceMode::Replicated(2)),
        ]);
        let mut tasks = vec![
            // restart condition none / on-failure, exit 0: the one task ended, complete
            at("o", 1, "shutdown", "complete", "", 5),
            at("f", 1, "shutdown", "complete", "", 6),
            // a constraint no node meets
            at("u", 1, "running", "pending", nss, 7),
            // a pull that fails: rejected attempts, the next one waiting for its delay
            at("p", 1, "shutdown", "rejected", nsi, 8),
            at("p", 1, "shutdown", "rejected", nsi, 9),
            at("p", 1, "ready", "rejected", nsi, 14),
            at("r", 1, "running", "running", "", 10),
            at("r", 2, "running", "running", "", 11),
        ];
        let d = converge_gate(&services, &listed(&tasks));
        assert!(d.pass, "{d:?}");
        assert_eq!(
            d.detail,
            format!(
                "no service converging (5 services; not waited for: unplaceable task 1 pending: {nss})"
            )
        );
        // the failing pull's next attempt, pulling again: a retry, not a deploy in flight
        tasks.push(at("p", 1, "running", "preparing", "", 15));
        let d = converge_gate(&services, &listed(&tasks));
        assert!(d.pass, "{d:?}");
        assert!(
            d.detail.contains(&format!(
                "pullfail task 1 preparing, retrying after a failed attempt (rejected: {nsi})"
            )),
            "{}",
            d.detail
        );
        // a pull that failed for lack of space is a reason to prune, not to wait
        let full = listed(&[
            at("p", 1, "shutdown", "rejected", enospc, 8),
            at("p", 1, "running", "preparing", "", 9),
        ]);
        let d = converge_gate(
            &listed(&[svc("p", "deploy", ServiceMode::Replicated(1))]),
            &full,
        );
        assert!(
            d.pass && d.detail.contains("no space left on device"),
            "{d:?}"
        );
        // an attempt that ended well (a service update's old task) is no excuse: a pull in flight
        let updated = listed(&[
            at("p", 1, "shutdown", "shutdown", "", 8),
            at("p", 1, "running", "preparing", "", 9),
        ]);
        let d = converge_gate(
            &listed(&[svc("p", "deploy", ServiceMode::Replicated(1))]),
            &updated,
        );
        assert!(!d.pass, "{d:?}");
        // the last ended attempt counts: an old failure followed by a clean shutdown is not a retry
        let old_failure = listed(&[
            at("p", 1, "shutdown", "failed", "task: non-zero exit (1)", 3),
            at("p", 1, "shutdown", "shutdown", "", 8),
            at("p", 1, "running", "starting", "", 9),
        ]);
        let d = converge_gate(
            &listed(&[svc("p", "deploy", ServiceMode::Replicated(1))]),
            &old_failure,
        );
        assert!(!d.pass, "{d:?}");
        // a task that waits for its healthcheck is starting: in flight
        let health = listed(&[at("h", 1, "running", "starting", "", 4)]);
        let d = converge_gate(
            &listed(&[svc("h", "health", ServiceMode::Replicated(1))]),
            &health,
        );
        assert_eq!(d.detail, "service converging: health task 1 starting");
        // a pending task the scheduler has not placed yet (no error) is in flight
        let pending = listed(&[at("h", 1, "running", "pending", "", 4)]);
        assert!(
            !converge_gate(
                &listed(&[svc("h", "h", ServiceMode::Replicated(1))]),
                &pending
            )
            .pass
        );
    }

    #[test]
    fn converge_gate_closes_during_an_update() {
        let mut s = svc("a", "web", ServiceMode::Replicated(1));
        s.update_state = Some("updating".into());
        let running = listed(&[task("a", "running")]);
        let d = converge_gate(&listed(&[s.clone()]), &running);
        assert!(!d.pass);
        assert!(d.detail.contains("update in progress (updating)"));
        s.update_state = Some("completed".into());
        assert!(converge_gate(&listed(&[s]), &running).pass);
    }
}
