//! The policies compared on the same traces. ci-docker-prune's rows run the crate's real
//! decision code: [`gates::disk_gate`], [`gates::runs_gate`], [`gates::converge_gate`],
//! [`plan::build`] and its steps ([`Step::ALL`], re-gated before each), [`evict::select`] and
//! [`ci_docker_prune::usage::UsageState::observe`] — the same calls `actions.rs` makes, on the modelled
//! daemon's listings. The anchors (NixOS `autoPrune`, the seed's shell, docuum, kubelet) and
//! the clairvoyant reference are modelled here after their documented behaviour.

use std::time::Duration;

use regex::Regex;

use ci_docker_prune::config::DEFAULT_RUN_STACK_PATTERN;
use ci_docker_prune::docker::Swarm;
use ci_docker_prune::evict::{self, EvictPolicy};
use ci_docker_prune::gates::{converge_gate, disk_gate, runs_gate};
use ci_docker_prune::plan::{self, ImageReason, Policy};
use ci_docker_prune::steps::{Item, Step};
use ci_docker_prune::usage::{Observation, UsageState};

use super::store::{Removal, Store, EPOCH};

const DAY: Duration = Duration::from_secs(86_400);

/// A policy under test. `on_timer` runs at the prune timer's firings; `after_event` after
/// every event of the trace (continuous tools); `on_poll` every `poll_every` seconds.
pub trait SimPolicy {
    fn name(&self) -> String;
    fn on_timer(&mut self, s: &mut Store, t: i64);
    fn after_event(&mut self, _s: &mut Store, _t: i64) {}
    fn poll_every(&self) -> Option<i64> {
        None
    }
    fn on_poll(&mut self, _s: &mut Store, _t: i64) {}
    /// Lost-event windows the usage state met (tiered policy only).
    fn gaps(&self) -> u32 {
        0
    }
}

/// The binary's gate sequence on the modelled daemon: disk, runs, converge.
pub fn gates_pass(s: &Store, threshold: u8, pattern: &Regex) -> bool {
    if !disk_gate(threshold, &[s.disk_usage()]).pass {
        return false;
    }
    let services = Swarm::Listed(s.service_infos());
    // a manager lists the services: the node's own task containers are not needed
    if !runs_gate(pattern, &services, &[]).pass {
        return false;
    }
    converge_gate(&services, &Swarm::Listed(s.running_tasks())).pass
}

/// ci-docker-prune's run as `actions::run` does it: gates, `plan::build` (and, with the tier,
/// `evict::queue`), then the plan's steps in order, every gate re-checked before each; the
/// eviction step only while usage is at or above the threshold, removing from the queue's
/// front until `evict::reached`. Returns whether the run got through.
pub fn prune_run(
    s: &mut Store,
    t: i64,
    threshold: u8,
    pattern: &Regex,
    p: &Policy,
    tier: Option<(&UsageState, &EvictPolicy)>,
) -> bool {
    if !gates_pass(s, threshold, pattern) {
        return false;
    }
    let inv = s.inventory();
    let mut plan = plan::build(&inv, p);
    if let Some((state, ep)) = tier {
        plan.evict = evict::queue(&plan, &inv, state, ep);
    }
    for step in Step::ALL {
        // below the threshold after the leftovers: nothing to evict
        if step == Step::Evict
            && (plan.evict.is_empty() || !disk_gate(threshold, &[s.disk_usage()]).pass)
        {
            continue;
        }
        if !gates_pass(s, threshold, pattern) {
            return false;
        }
        for item in step.items(&plan, p.until) {
            match item {
                Item::Container(c) => {
                    s.remove_container(&c.id);
                }
                Item::Image(i) => {
                    if let (Step::Evict, Some((_, ep))) = (step, tier) {
                        if evict::reached(s.percent(), ep) {
                            break;
                        }
                    }
                    let why = match i.reason {
                        ImageReason::BuildLeftover => Removal::Leftover,
                        ImageReason::SupersededPull { .. } | ImageReason::Superseded { .. } => {
                            Removal::Superseded
                        }
                        ImageReason::LeastRecentlyUsed { .. } => Removal::Lru,
                    };
                    s.remove_image(&i.id, why);
                }
                Item::BuildCache { until, .. } => {
                    // the daemon's `until` prune; plan::select_build_cache mirrors its rule
                    let p2 = Policy {
                        now: EPOCH + t,
                        until,
                        ..*p
                    };
                    let ids: Vec<String> = plan::select_build_cache(&s.cache_infos(), &p2)
                        .into_iter()
                        .map(|b| b.id)
                        .collect();
                    s.remove_cache(&ids);
                }
            }
        }
    }
    true
}

fn policy(t: i64, reclaim: bool) -> Policy {
    Policy {
        now: EPOCH + t,
        until: DAY,
        reclaim_superseded_pulls: reclaim,
    }
}

fn pattern() -> Regex {
    Regex::new(DEFAULT_RUN_STACK_PATTERN).unwrap_or_else(|_| unreachable!("valid default"))
}

/// ci-docker-prune's current default (or with `reclaim_superseded_pulls`).
pub struct CiDefault {
    pub threshold: u8,
    pub reclaim: bool,
    re: Regex,
}

impl CiDefault {
    pub fn new(threshold: u8, reclaim: bool) -> Self {
        CiDefault {
            threshold,
            reclaim,
            re: pattern(),
        }
    }
}

impl SimPolicy for CiDefault {
    fn name(&self) -> String {
        if self.reclaim {
            "ci-docker-prune, reclaim_superseded_pulls".into()
        } else {
            "ci-docker-prune default".into()
        }
    }
    fn on_timer(&mut self, s: &mut Store, t: i64) {
        prune_run(
            s,
            t,
            self.threshold,
            &self.re,
            &policy(t, self.reclaim),
            None,
        );
    }
}

/// ci-docker-prune with the eviction tier: the run above, then — usage still at or above the
/// threshold — [`evict::select`]'s queue removed from the front, re-measured after each image,
/// down to the low watermark. The usage state is fed at every timer run, as the binary does.
pub struct Tiered {
    pub threshold: u8,
    pub evict: EvictSettings,
    pub state: UsageState,
    /// Fire every this many seconds instead of on the daily timer.
    pub every: Option<i64>,
    re: Regex,
    gaps: u32,
}

/// The tier's knobs.
#[derive(Debug, Clone, Copy)]
pub struct EvictSettings {
    pub low_watermark: u8,
    pub keep_recent: Duration,
}

/// Feed the usage state as the binary does at each run; true when events were lost.
pub fn record_usage(state: &mut UsageState, s: &Store, t: i64) -> bool {
    let inv = s.inventory();
    let events = s.events_since(state.cursor);
    let o = state.observe(&Observation {
        now: EPOCH + t,
        boot_id: Some("sim"),
        images: &inv.images,
        services: &inv.services,
        containers: &inv.containers,
        events: &events,
        marks: None,
    });
    o.gap.is_some()
}

impl Tiered {
    pub fn new(threshold: u8, evict: EvictSettings) -> Self {
        Tiered {
            threshold,
            evict,
            state: UsageState::new(),
            every: None,
            re: pattern(),
            gaps: 0,
        }
    }

    /// The same policy on a timer firing every `secs` seconds instead of daily.
    pub fn every(mut self, secs: i64) -> Self {
        self.every = Some(secs);
        self
    }

    fn fire(&mut self, s: &mut Store, t: i64) {
        // as the binary: below the threshold the daemon is not contacted, nothing is learnt
        if !disk_gate(self.threshold, &[s.disk_usage()]).pass {
            return;
        }
        if record_usage(&mut self.state, s, t) {
            self.gaps += 1;
        }
        let p = EvictPolicy {
            now: EPOCH + t,
            keep_recent: self.evict.keep_recent,
            low_watermark: self.evict.low_watermark,
            // not modelled: the simulator's runs are a day apart and its age guard would be
            // the binary's `evict_min_age` (docs/prune-policy.md, "The eviction tier")
            min_age: Duration::ZERO,
        };
        let state = self.state.clone();
        prune_run(
            s,
            t,
            self.threshold,
            &self.re,
            &policy(t, false),
            Some((&state, &p)),
        );
    }
}

impl SimPolicy for Tiered {
    fn name(&self) -> String {
        let every = match self.every {
            Some(e) => format!(", timer every {} h", e / 3600),
            None => String::new(),
        };
        format!(
            "ci-docker-prune + tier (low {} %, keep {} d{every})",
            self.evict.low_watermark,
            self.evict.keep_recent.as_secs() / 86_400
        )
    }
    fn gaps(&self) -> u32 {
        self.gaps
    }
    fn on_timer(&mut self, s: &mut Store, t: i64) {
        if self.every.is_none() {
            self.fire(s, t);
        }
    }
    fn poll_every(&self) -> Option<i64> {
        self.every
    }
    fn on_poll(&mut self, s: &mut Store, t: i64) {
        self.fire(s, t);
    }
}

/// The clairvoyant reference: same trigger as the tier (gated timer runs, after the leftovers,
/// usage at or above the threshold), same low watermark, but it evicts the cached pull whose
/// next use is farthest in the future (never used again first, bigger first).
pub struct Belady {
    pub threshold: u8,
    pub low_watermark: u8,
    uses: Vec<Vec<i64>>,
    re: Regex,
}

impl Belady {
    pub fn new(threshold: u8, low_watermark: u8, uses: Vec<Vec<i64>>) -> Self {
        Belady {
            threshold,
            low_watermark,
            uses,
            re: pattern(),
        }
    }
    fn next_use(&self, v: usize, t: i64) -> i64 {
        let u = &self.uses[v];
        let i = u.partition_point(|&x| x <= t);
        u.get(i).copied().unwrap_or(i64::MAX)
    }
}

impl SimPolicy for Belady {
    fn name(&self) -> String {
        format!("clairvoyant (Belady, low {} %)", self.low_watermark)
    }
    fn on_timer(&mut self, s: &mut Store, t: i64) {
        if !prune_run(s, t, self.threshold, &self.re, &policy(t, false), None) {
            return;
        }
        if s.percent() < self.threshold {
            return;
        }
        let referenced: Vec<usize> = s.services.iter().map(|sv| sv.version).collect();
        let mut cands: Vec<(i64, u64, usize)> = s
            .images
            .keys()
            .copied()
            .filter(|&v| s.trace.versions[v].digest.is_some())
            .filter(|v| !referenced.contains(v) && !s.containers.iter().any(|c| c.version == *v))
            .map(|v| (self.next_use(v, t), s.trace.image_bytes(v), v))
            .collect();
        cands.sort_by(|a, b| b.cmp(a));
        for (_, _, v) in cands {
            if s.percent() <= self.low_watermark {
                break;
            }
            s.remove_version(v, Removal::Lru);
        }
    }
}

/// NixOS `virtualisation.docker.autoPrune` as the seed's host had it:
/// `docker system prune --force --all --filter until=24h`, daily, no gates.
pub struct AutoPruneAll;

impl SimPolicy for AutoPruneAll {
    fn name(&self) -> String {
        "NixOS autoPrune (system prune --all, until=24h)".into()
    }
    fn on_timer(&mut self, s: &mut Store, t: i64) {
        let p = policy(t, false);
        housekeeping(s, &p);
        let cutoff = EPOCH + t - DAY.as_secs() as i64;
        let imgs: Vec<usize> = s
            .images
            .keys()
            .copied()
            .filter(|&v| EPOCH + s.trace.versions[v].created <= cutoff)
            .collect();
        for v in imgs {
            let why = if s.trace.versions[v].digest.is_none() && !s.images[&v].tagged {
                Removal::Leftover
            } else {
                Removal::Other
            };
            s.remove_version(v, why); // refused while a container uses it
        }
    }
}

/// Stopped containers and build cache older than 24 h, as the daemon's `until` prunes do.
fn housekeeping(s: &mut Store, p: &Policy) {
    for c in plan::select_containers(&s.container_infos(), p) {
        s.remove_container(&c.id);
    }
    let ids: Vec<String> = plan::select_build_cache(&s.cache_infos(), p)
        .into_iter()
        .map(|b| b.id)
        .collect();
    s.remove_cache(&ids);
}

/// The seed's shell: gated like ci-docker-prune, then `docker container prune`, `docker image
/// prune` (dangling: every untagged image, swarm pulls included) and `docker builder prune`,
/// each `--filter until=24h`.
pub struct SeedShell {
    pub threshold: u8,
    re: Regex,
}

impl SeedShell {
    pub fn new(threshold: u8) -> Self {
        SeedShell {
            threshold,
            re: pattern(),
        }
    }
}

impl SimPolicy for SeedShell {
    fn name(&self) -> String {
        "seed's shell (dangling + until=24h, gated)".into()
    }
    fn on_timer(&mut self, s: &mut Store, t: i64) {
        if !gates_pass(s, self.threshold, &self.re) {
            return;
        }
        let p = policy(t, false);
        housekeeping(s, &p);
        let cutoff = EPOCH + t - DAY.as_secs() as i64;
        let imgs: Vec<usize> = s
            .images
            .iter()
            .filter(|(v, img)| !img.tagged && EPOCH + s.trace.versions[**v].created <= cutoff)
            .map(|(v, _)| *v)
            .collect();
        for v in imgs {
            let why = if s.trace.versions[v].digest.is_none() {
                Removal::Leftover
            } else {
                Removal::Other
            };
            s.remove_version(v, why);
        }
    }
}

/// Evict least recently used images not used by a container (any image: docuum and kubelet
/// know nothing of swarm services) until `done` holds.
fn lru_until(s: &mut Store, t: i64, min_age: i64, done: impl Fn(&Store) -> bool) {
    if done(s) {
        return;
    }
    let mut cands: Vec<(i64, usize)> = s
        .images
        .keys()
        .copied()
        .filter(|v| !s.containers.iter().any(|c| c.version == *v))
        .map(|v| (s.last_use.get(&v).copied().unwrap_or(t), v))
        .filter(|(lu, _)| t - lu >= min_age)
        .collect();
    cands.sort();
    for (_, v) in cands {
        if done(s) {
            break;
        }
        s.remove_version(v, Removal::Lru);
    }
}

/// docuum: watches the daemon's events and, whenever images take more than `limit` bytes,
/// deletes the least recently used images no container uses until they fit. Paired with the
/// daily housekeeping (stopped containers, build cache older than 24 h), which docuum leaves.
pub struct Docuum {
    pub limit_bytes: u64,
}

impl SimPolicy for Docuum {
    fn name(&self) -> String {
        format!(
            "docuum-style LRU to {:.0} GiB of images",
            self.limit_bytes as f64 / (1u64 << 30) as f64
        )
    }
    fn on_timer(&mut self, s: &mut Store, t: i64) {
        housekeeping(s, &policy(t, false));
    }
    fn after_event(&mut self, s: &mut Store, t: i64) {
        let limit = self.limit_bytes;
        lru_until(s, t, 0, |s| image_bytes(s) <= limit);
    }
}

fn image_bytes(s: &Store) -> u64 {
    s.used
        - s.trace.system_bytes
        - s.containers.iter().map(|c| c.rw_bytes).sum::<u64>()
        - s.cache.iter().map(|c| c.size).sum::<u64>()
}

/// kubelet's image GC: every 5 minutes, when usage is at or above `high`, delete least recently
/// used images no container uses (at least 2 minutes old) down to `low`. Paired with the daily
/// housekeeping.
pub struct Kubelet {
    pub high: u8,
    pub low: u8,
}

impl SimPolicy for Kubelet {
    fn name(&self) -> String {
        format!("kubelet-style LRU {} % → {} %", self.high, self.low)
    }
    fn on_timer(&mut self, s: &mut Store, t: i64) {
        housekeeping(s, &policy(t, false));
    }
    fn poll_every(&self) -> Option<i64> {
        Some(300)
    }
    fn on_poll(&mut self, s: &mut Store, t: i64) {
        if s.percent() < self.high {
            return;
        }
        let low = self.low;
        lru_until(s, t, 120, |s| s.percent() <= low);
    }
}
