//! The churn simulator: months of CI churn on a modelled host, replayed for each prune policy.
//!
//! - [`trace`]: a seeded, deterministic trace generated from documented [`trace::Params`]
//!   (the reference host, a fast-release host, a build-heavy host, a tight-disk host);
//! - [`store`]: the modelled daemon (images with shared layers, exact disk accounting,
//!   containers, services, build cache, the daemon's 256-event buffer), listed as the
//!   [`ci_docker_prune::docker`] types;
//! - [`policies`]: the policies; ci-docker-prune's rows call the product crate's real gates,
//!   plan, steps, eviction selection and usage state (this crate is not part of the product;
//!   the product does not depend on it).
//!
//! [`simulate`] replays one trace for one policy and measures peak usage, days above the
//! threshold, deploys that met a full disk and registry pulls; [`seed_sweep`] replays every
//! policy on many draws of one profile against the compulsory lower bound
//! ([`compulsory_pulls`]). The bench
//! (`cargo bench -p ci-docker-prune-sim --bench churn`) prints the tables and draws the plots.

pub mod policies;
pub mod store;
pub mod trace;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use policies::{
    AutoPruneAll, Belady, CiDefault, Docuum, EvictSettings, Kubelet, SeedShell, SimPolicy, Tiered,
};
use store::{Pulls, Removal, Store};
use trace::{Event, Params, Trace, DAY};

/// The result of one policy on one trace.
#[derive(Debug, Clone)]
pub struct SimResult {
    pub policy: String,
    /// Highest usage at any moment, percent (exact, not rounded).
    pub peak_pct: f64,
    /// Highest usage seen by the timer when it fired (before the prune acted), percent.
    pub max_at_timer_pct: f64,
    /// Days with usage above the threshold at some moment.
    pub days_above: u32,
    /// Deploys (and upgrades) whose pull did not fit on the disk.
    pub full_deploys: u32,
    /// Deploys and upgrades in total.
    pub deploys: u32,
    /// Local builds that did not fit.
    pub full_builds: u32,
    pub pulls: Pulls,
    pub removed: BTreeMap<Removal, u64>,
    /// Every image removal: (trace time, version, why).
    pub removal_log: Vec<(i64, usize, Removal)>,
    /// Every pull: (trace time, version, layers, bytes).
    pub pull_log: Vec<(i64, usize, u64, u64)>,
    /// Lost-event windows (tiered policy).
    pub gaps: u32,
    /// Usage per hour (max within the hour), percent.
    pub usage_hourly: Vec<f32>,
    /// Cumulative pulled bytes at the end of each hour.
    pub pulled_hourly: Vec<u64>,
}

/// Replay `trace` for `policy`, with the disk threshold `threshold` (days above it counted).
pub fn simulate(trace: &Trace, policy: &mut dyn SimPolicy, threshold: u8) -> SimResult {
    let mut s = Store::new(trace);
    let hours = trace.params.days as usize * 24 + 24;
    let mut usage_hourly = vec![0f32; hours];
    let mut pulled_hourly = vec![0u64; hours];
    let mut day_max = vec![0f64; trace.params.days as usize + 2];
    let mut r = SimResult {
        policy: policy.name(),
        peak_pct: 0.0,
        max_at_timer_pct: 0.0,
        days_above: 0,
        full_deploys: 0,
        deploys: 0,
        full_builds: 0,
        pulls: Pulls::default(),
        removed: BTreeMap::new(),
        removal_log: Vec::new(),
        pull_log: Vec::new(),
        gaps: 0,
        usage_hourly: Vec::new(),
        pulled_hourly: Vec::new(),
    };
    let disk = trace.params.disk_bytes as f64;
    let mut failed: HashSet<u32> = HashSet::new();
    let poll = policy.poll_every();
    let mut next_poll = poll.unwrap_or(i64::MAX);
    let mut measure = |s: &Store, t: i64, r: &mut SimResult| {
        let pct = s.used as f64 * 100.0 / disk;
        r.peak_pct = r.peak_pct.max(pct);
        let h = ((t.max(0) / 3600) as usize).min(hours - 1);
        usage_hourly[h] = usage_hourly[h].max(pct as f32);
        pulled_hourly[h] = s.pulls.bytes;
        let d = ((t.max(0) / DAY) as usize).min(day_max.len() - 1);
        day_max[d] = day_max[d].max(pct);
    };
    measure(&s, 0, &mut r);
    for e in &trace.events {
        while next_poll <= e.t {
            s.now = next_poll;
            policy.on_poll(&mut s, next_poll);
            measure(&s, next_poll, &mut r);
            next_poll += poll.unwrap_or(i64::MAX);
        }
        let t = e.t;
        s.now = t;
        match &e.ev {
            Event::Deploy {
                run,
                services,
                volume_bytes,
            } => {
                r.deploys += 1;
                let mut layers = HashSet::new();
                let mut need = *volume_bytes;
                for sp in services {
                    if s.images.contains_key(&sp.version) {
                        continue;
                    }
                    for &l in &trace.versions[sp.version].layers {
                        if layers.insert(l) {
                            need += s.missing_layer(l);
                        }
                    }
                }
                if s.used + need > trace.params.disk_bytes {
                    r.full_deploys += 1;
                    failed.insert(*run);
                } else {
                    for sp in services {
                        s.pull(sp.version, t, false);
                    }
                    for sp in services {
                        s.add_service(sp, *run, t);
                    }
                    s.add_volume(*run, *volume_bytes);
                }
            }
            Event::Upgrade { run, services } => {
                if failed.contains(run) {
                    continue;
                }
                r.deploys += 1;
                let need: u64 = services
                    .iter()
                    .map(|sp| s.missing_bytes(sp.version).1)
                    .sum();
                if s.used + need > trace.params.disk_bytes {
                    r.full_deploys += 1;
                    failed.insert(*run);
                } else {
                    for sp in services {
                        s.pull(sp.version, t, false);
                        s.update_service(sp, *run, t);
                    }
                }
            }
            Event::OneOff {
                run,
                version,
                rw_bytes,
            } => {
                if failed.contains(run) || s.used + rw_bytes > trace.params.disk_bytes {
                    continue;
                }
                s.add_exited(*version, &format!("oneoff-{run}"), t, *rw_bytes);
            }
            Event::Teardown { run } => {
                if !failed.remove(run) {
                    s.teardown(*run, t);
                }
            }
            Event::Build {
                version,
                base,
                cache_bytes,
            } => {
                let need = s.missing_bytes(*base).1 + cache_bytes + {
                    let own: u64 = trace.versions[*version]
                        .layers
                        .iter()
                        .filter(|l| !trace.versions[*base].layers.contains(l))
                        .map(|&l| s.missing_layer(l))
                        .sum();
                    own
                };
                if s.used + need > trace.params.disk_bytes {
                    r.full_builds += 1;
                } else {
                    s.pull(*base, t, true);
                    s.build(*version, t, *cache_bytes);
                }
            }
            Event::Leftover { version } => s.leftover(*version, t),
            Event::Timer => {
                let pct = s.used as f64 * 100.0 / disk;
                r.max_at_timer_pct = r.max_at_timer_pct.max(pct);
                policy.on_timer(&mut s, t);
            }
        }
        measure(&s, t, &mut r);
        policy.after_event(&mut s, t);
        measure(&s, t, &mut r);
    }
    r.days_above = day_max
        .iter()
        .take(trace.params.days as usize)
        .filter(|&&m| m > f64::from(threshold))
        .count() as u32;
    // carry cumulative pulls forward over hours without events
    let mut last = 0;
    for p in pulled_hourly.iter_mut() {
        if *p < last {
            *p = last;
        }
        last = *p;
    }
    let mut last = usage_hourly.first().copied().unwrap_or(0.0);
    for u in usage_hourly.iter_mut() {
        if *u == 0.0 {
            *u = last;
        }
        last = *u;
    }
    r.pulls = s.pulls;
    r.removed = s.removed.clone();
    r.removal_log = s.removal_log.clone();
    r.pull_log = s.pull_log.clone();
    r.gaps = policy.gaps();
    r.usage_hourly = usage_hourly;
    r.pulled_hourly = pulled_hourly;
    r
}

/// A lower bound on any policy's pulls: every layer the trace uses that is not on the host at
/// the start must be pulled at least once (compulsory misses).
pub fn compulsory_pulls(trace: &Trace) -> Pulls {
    let mut present: HashSet<usize> = trace
        .initial
        .iter()
        .flat_map(|&v| trace.versions[v].layers.iter().copied())
        .collect();
    let mut seen_versions: HashSet<usize> = trace.initial.iter().copied().collect();
    let mut p = Pulls::default();
    let need =
        |v: usize, p: &mut Pulls, present: &mut HashSet<usize>, seen: &mut HashSet<usize>| {
            if !seen.insert(v) {
                return;
            }
            p.images += 1;
            for &l in &trace.versions[v].layers {
                if present.insert(l) {
                    p.layers += 1;
                    p.bytes += trace.layers[l];
                }
            }
        };
    for e in &trace.events {
        match &e.ev {
            Event::Deploy { services, .. } | Event::Upgrade { services, .. } => {
                for sp in services {
                    need(sp.version, &mut p, &mut present, &mut seen_versions);
                }
            }
            Event::Build { base, version, .. } => {
                need(*base, &mut p, &mut present, &mut seen_versions);
                // the build's own layers are made here, not pulled
                for &l in &trace.versions[*version].layers {
                    present.insert(l);
                }
            }
            _ => {}
        }
    }
    p
}

/// The policies of the comparison, in table order, for one trace.
pub fn policies(trace: &Trace, threshold: u8, tier: EvictSettings) -> Vec<Box<dyn SimPolicy>> {
    let disk = trace.params.disk_bytes;
    let threshold_bytes = disk / 100 * u64::from(threshold);
    vec![
        Box::new(AutoPruneAll),
        Box::new(SeedShell::new(threshold)),
        Box::new(Docuum {
            limit_bytes: threshold_bytes.saturating_sub(trace.system_bytes),
        }),
        Box::new(Kubelet {
            high: threshold,
            low: tier.low_watermark,
        }),
        Box::new(CiDefault::new(threshold, false)),
        Box::new(CiDefault::new(threshold, true)),
        Box::new(Tiered::new(threshold, tier)),
        Box::new(Belady::new(threshold, tier.low_watermark, trace.uses())),
    ]
}

/// One policy over a seed sweep: every number is over all seeds of one host profile.
#[derive(Debug, Clone)]
pub struct SweepRow {
    pub policy: String,
    pub seeds: u32,
    /// Pulled bytes ÷ the compulsory lower bound ([`compulsory_pulls`]) of the same trace:
    /// the worst (highest) and the median over the seeds.
    pub worst_bytes_ratio: f64,
    pub median_bytes_ratio: f64,
    /// The seed of the worst ratio.
    pub worst_seed: u64,
    /// Pulled images ÷ the lower bound's images, the worst over the seeds.
    pub worst_images_ratio: f64,
    /// Deploys that met a full disk, the most on one seed, and seeds with any.
    pub max_full_deploys: u32,
    pub seeds_with_full_deploys: u32,
    /// The highest usage at any moment over all seeds, percent.
    pub max_peak_pct: f64,
    /// Images the policy removed as least recently used ([`Removal::Lru`]), all seeds.
    pub lru_removals: u64,
}

/// The tier with `evict_keep_recent` 0 against the tier as given, on the same seeds: how often
/// the guard changed what the tier removed.
#[derive(Debug, Clone, Copy)]
pub struct KeepRecentEffect {
    pub seeds: u32,
    /// Seeds where the two removal logs differ.
    pub seeds_changed: u32,
    /// Removals (all seeds) the tier without the guard made that the tier with it did not.
    pub removals_only_without_guard: u64,
}

/// The seeds of a sweep: `n` consecutive seeds starting at the profile's own.
pub fn sweep_seeds(base: &Params, n: u32) -> Vec<u64> {
    (0..u64::from(n))
        .map(|i| base.seed.wrapping_add(i))
        .collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Every policy of [`policies`] on `seeds.len()` draws of the profile `base` (only the seed
/// differs), each against the compulsory lower bound of its own trace. Also returns what
/// `evict_keep_recent` changed for the tier on the same draws.
pub fn seed_sweep(
    base: &Params,
    seeds: &[u64],
    threshold: u8,
    tier: EvictSettings,
) -> (Vec<SweepRow>, KeepRecentEffect) {
    // per policy: its name and, per seed, (seed, result, the trace's lower bound)
    type Runs = Vec<(u64, SimResult, Pulls)>;
    let mut per_policy: Vec<(String, Runs)> = Vec::new();
    let mut keep = KeepRecentEffect {
        seeds: seeds.len() as u32,
        seeds_changed: 0,
        removals_only_without_guard: 0,
    };
    for &seed in seeds {
        let mut p = base.clone();
        p.seed = seed;
        let trace = trace::generate(&p);
        let lb = compulsory_pulls(&trace);
        let mut tier_log = None;
        for (i, mut pol) in policies(&trace, threshold, tier).into_iter().enumerate() {
            let r = simulate(&trace, pol.as_mut(), threshold);
            if r.policy.starts_with("ci-docker-prune + tier") {
                tier_log = Some(r.removal_log.clone());
            }
            if per_policy.len() <= i {
                per_policy.push((r.policy.clone(), Vec::new()));
            }
            per_policy[i].1.push((seed, r, lb));
        }
        let unguarded = EvictSettings {
            keep_recent: Duration::ZERO,
            ..tier
        };
        let r0 = simulate(&trace, &mut Tiered::new(threshold, unguarded), threshold);
        if let Some(log) = tier_log {
            if log != r0.removal_log {
                keep.seeds_changed += 1;
            }
            keep.removals_only_without_guard +=
                r0.removal_log.iter().filter(|x| !log.contains(x)).count() as u64;
        }
    }
    let rows = per_policy
        .into_iter()
        .map(|(policy, runs)| {
            let ratio = |r: &SimResult, lb: &Pulls| r.pulls.bytes as f64 / lb.bytes.max(1) as f64;
            let mut ratios: Vec<f64> = runs.iter().map(|(_, r, lb)| ratio(r, lb)).collect();
            let (worst_seed, worst) = runs
                .iter()
                .map(|(s, r, lb)| (*s, ratio(r, lb)))
                .fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
            SweepRow {
                policy,
                seeds: runs.len() as u32,
                worst_bytes_ratio: worst,
                median_bytes_ratio: median(&mut ratios),
                worst_seed,
                worst_images_ratio: runs
                    .iter()
                    .map(|(_, r, lb)| r.pulls.images as f64 / lb.images.max(1) as f64)
                    .fold(f64::MIN, f64::max),
                max_full_deploys: runs
                    .iter()
                    .map(|(_, r, _)| r.full_deploys)
                    .max()
                    .unwrap_or(0),
                seeds_with_full_deploys: runs.iter().filter(|(_, r, _)| r.full_deploys > 0).count()
                    as u32,
                max_peak_pct: runs.iter().map(|(_, r, _)| r.peak_pct).fold(0.0, f64::max),
                lru_removals: runs
                    .iter()
                    .map(|(_, r, _)| r.removed.get(&Removal::Lru).copied().unwrap_or(0))
                    .sum(),
            }
        })
        .collect();
    (rows, keep)
}

/// The tier's defaults as measured (see docs/prune-policy.md).
pub fn default_tier() -> EvictSettings {
    EvictSettings {
        low_watermark: ci_docker_prune::evict::DEFAULT_LOW_WATERMARK,
        keep_recent: Duration::from_secs(ci_docker_prune::evict::DEFAULT_KEEP_RECENT_DAYS * 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_runs_the_real_plan_and_keeps_cached_pulls() {
        let mut p = trace::Params::reference();
        p.days = 20;
        let t = trace::generate(&p);
        let r = simulate(&t, &mut CiDefault::new(80, false), 80);
        assert!(r.deploys > 100);
        assert_eq!(r.removed.get(&Removal::Lru), None);
        assert_eq!(r.removed.get(&Removal::Superseded), None);
        let b = compulsory_pulls(&t);
        assert!(r.pulls.bytes >= b.bytes);
    }

    #[test]
    fn the_seed_sweep_draws_distinct_traces_and_no_policy_beats_the_lower_bound() {
        let mut p = trace::Params::tight_disk();
        p.days = 12;
        let seeds = sweep_seeds(&p, 3);
        assert_eq!(seeds, vec![p.seed, p.seed + 1, p.seed + 2]);
        let (rows, keep) = seed_sweep(&p, &seeds, 80, default_tier());
        assert_eq!(rows.len(), 8);
        assert_eq!(keep.seeds, 3);
        for r in &rows {
            assert_eq!(r.seeds, 3, "{}", r.policy);
            assert!(r.median_bytes_ratio <= r.worst_bytes_ratio, "{}", r.policy);
            // every deploy that went through pulled what it lacked: only failed deploys can
            // bring a policy under the compulsory lower bound
            if r.seeds_with_full_deploys == 0 {
                assert!(
                    r.median_bytes_ratio >= 1.0,
                    "{}: {}",
                    r.policy,
                    r.median_bytes_ratio
                );
            }
        }
        let mut odd = [3.0, 1.0, 2.0];
        assert_eq!(median(&mut odd), 2.0);
        let mut even = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(median(&mut even), 2.5);
    }
}
