//! Every simulator policy on one small hand-built trace, against a table of which image goes
//! when that was derived by hand from each policy's documented rule (docs/prune-policy.md, "The
//! policies"), not from the code under test. The ci-docker-prune rows run the product's own
//! `plan::build` and `evict::queue`; a selection bug there shows here as a row that differs
//! from its hand-derived table, where the churn replay (simulator against the real binary)
//! would see the same bug on both sides.
//!
//! The host: a disk of 100 units (1 unit = 1 MiB), 52 units not Docker's. Four images, each one
//! layer of its own (no shared layers, so an image's removal frees exactly its size):
//!
//! | image | repo | size | pulled from a registry | created |
//! |---|---|---|---|---|
//! | a1 | app | 10 | yes (digest) | day −20 |
//! | a2 | app | 10 | yes (digest) | day −10 |
//! | b1 | db  | 12 | yes (digest) | day −10 |
//! | L  | build leftover | 5 | no (no tag, no digest) | day −1 |
//!
//! The events (each run: a swarm deploy by digest, so the image stays untagged, torn down ten
//! minutes later):
//!
//! | time | event | usage after |
//! |---|---|---|
//! | day 0 10:00 | run 1 deploys a1 (pull) | 62 |
//! | day 1 00:00 | timer | |
//! | day 1 10:00 | run 2 deploys b1 (pull) | 74 |
//! | day 2 10:00 | run 3 deploys a2 (pull) | 84 |
//! | day 2 11:00 | leftover L appears | 89 |
//! | day 3 00:00 | timer | |
//! | day 3 10:00 | run 4 deploys a1 again (pull only if it was removed) | |
//!
//! `df` percentages are exact integers here (the disk is 100 units), so no decision sits on a
//! rounding boundary.

use std::time::Duration;

use ci_docker_prune_sim::policies::{
    AutoPruneAll, Belady, CiDefault, Docuum, EvictSettings, Kubelet, SeedShell, SimPolicy, Tiered,
};
use ci_docker_prune_sim::simulate;
use ci_docker_prune_sim::store::Removal;
use ci_docker_prune_sim::trace::{
    Event, Params, Repo, RepoKind, ServiceSpec, Timed, Trace, Version, DAY,
};

const U: u64 = 1 << 20;
const A1: usize = 0;
const A2: usize = 1;
const B1: usize = 2;
const L: usize = 3;
const NAMES: [&str; 4] = ["a1", "a2", "b1", "L"];

const fn at(day: i64, hour: i64, min: i64) -> i64 {
    day * DAY + hour * 3600 + min * 60
}

fn trace() -> Trace {
    trace_with(&[])
}

/// The trace with `extra` timer firings (trace times) added.
fn trace_with(extra_timers: &[i64]) -> Trace {
    let mut params = Params::reference();
    params.name = "hand".into();
    params.days = 5;
    params.disk_bytes = 100 * U;
    params.start_used_bytes = 52 * U;
    params.events_per_service = 2;
    let version = |repo: usize, n: u64, digest: bool, created_days: i64, layer: usize| Version {
        repo,
        id: format!("sha256:{n:064x}"),
        digest: digest.then(|| format!("sha256:{:064x}", n + 100)),
        tag: format!("{n}"),
        created: created_days * DAY,
        layers: vec![layer],
    };
    let versions = vec![
        version(0, 1, true, -20, 0),
        version(0, 2, true, -10, 1),
        version(1, 3, true, -10, 2),
        version(2, 4, false, -1, 3),
    ];
    let repos = vec![
        Repo {
            name: "hand/app".into(),
            kind: RepoKind::App,
            base: 0,
            versions: vec![A1, A2],
        },
        Repo {
            name: "hand/db".into(),
            kind: RepoKind::Dep,
            base: 0,
            versions: vec![B1],
        },
        Repo {
            name: "hand/build".into(),
            kind: RepoKind::Build,
            base: 0,
            versions: vec![L],
        },
    ];
    let mut events = Vec::new();
    let run = |events: &mut Vec<Timed>, id: u32, t: i64, v: usize| {
        events.push(Timed {
            t,
            ev: Event::Deploy {
                run: id,
                services: vec![ServiceSpec {
                    name: format!("abc-{id:06x}_ci_commoninternet_net_app"),
                    version: v,
                }],
                volume_bytes: 0,
            },
        });
        events.push(Timed {
            t: t + 600,
            ev: Event::Teardown { run: id },
        });
    };
    run(&mut events, 1, at(0, 10, 0), A1);
    events.push(Timed {
        t: at(1, 0, 0),
        ev: Event::Timer,
    });
    run(&mut events, 2, at(1, 10, 0), B1);
    run(&mut events, 3, at(2, 10, 0), A2);
    events.push(Timed {
        t: at(2, 11, 0),
        ev: Event::Leftover { version: L },
    });
    events.push(Timed {
        t: at(3, 0, 0),
        ev: Event::Timer,
    });
    run(&mut events, 4, at(3, 10, 0), A1);
    for &t in extra_timers {
        events.push(Timed {
            t,
            ev: Event::Timer,
        });
    }
    events.sort_by_key(|e| e.t);
    Trace {
        params,
        layers: vec![10 * U, 10 * U, 12 * U, 5 * U],
        repos,
        versions,
        initial: Vec::new(),
        infra: Vec::new(),
        system_bytes: 52 * U,
        events,
    }
}

type Row = (i64, &'static str, Removal);

/// The policy's removals (in the order they happened) and its registry pulls (images).
fn replay(policy: &mut dyn SimPolicy) -> (Vec<Row>, u64) {
    replay_on(&trace(), policy)
}

fn replay_on(t: &Trace, policy: &mut dyn SimPolicy) -> (Vec<Row>, u64) {
    let r = simulate(t, policy, 80);
    assert_eq!(r.full_deploys, 0, "{}: a deploy met a full disk", r.policy);
    assert_eq!(r.deploys, 4);
    let log = r
        .removal_log
        .iter()
        .map(|&(t, v, why)| (t, NAMES[v], why))
        .collect();
    (log, r.pulls.images)
}

fn sorted(mut v: Vec<Row>) -> Vec<Row> {
    v.sort_by_key(|&(t, n, _)| (t, n));
    v
}

const TIMER3: i64 = at(3, 0, 0);

/// The default: gated (89 ≥ 80 at the day-3 timer; 62 < 80 at day 1: nothing), removes only
/// the build leftover L (no tag, no digest, older than 24 h). a1 is still there for run 4:
/// 3 pulls.
#[test]
fn ci_docker_prune_default_removes_only_the_leftover() {
    let (log, pulls) = replay(&mut CiDefault::new(80, false));
    assert_eq!(log, vec![(TIMER3, "L", Removal::Leftover)]);
    assert_eq!(pulls, 3);
}

/// reclaim_superseded_pulls: also every untagged older digest of a repository that has a newer
/// image: a1 (app has a2). Run 4 pulls a1 again: 4 pulls.
#[test]
fn reclaim_superseded_pulls_also_removes_the_older_digest() {
    let (log, pulls) = replay(&mut CiDefault::new(80, true));
    assert_eq!(
        sorted(log),
        vec![
            (TIMER3, "L", Removal::Leftover),
            (TIMER3, "a1", Removal::Superseded),
        ]
    );
    assert_eq!(pulls, 4);
}

/// The tier (low 70, keep 14 days): leftovers first (89 → 84), still ≥ 80, so the queue: a2 is
/// the newest of app and app was deployed within 14 days (kept), b1 the newest of db, deployed
/// yesterday (kept), a1 superseded: removed (84 → 74). The queue is empty before 70 is
/// reached. Run 4 pulls a1 again: 4 pulls.
#[test]
fn the_tier_evicts_the_superseded_digest_after_the_leftover() {
    let tier = EvictSettings {
        low_watermark: 70,
        keep_recent: Duration::from_secs(14 * 86_400),
    };
    let (log, pulls) = replay(&mut Tiered::new(80, tier));
    assert_eq!(
        log,
        vec![
            (TIMER3, "L", Removal::Leftover),
            (TIMER3, "a1", Removal::Superseded),
        ]
    );
    assert_eq!(pulls, 4);
}

/// Belady (threshold 80, low 70): the default run removes L (89 → 84); still ≥ 80, so cached
/// pulls no service or container uses, the farthest next use first, bigger first on a tie:
/// a2 and b1 are never used again (b1 is bigger: first), a1 is used at day 3 10:00 (last).
/// b1 (84 → 72), a2 (72 → 62 ≤ 70: stop). a1 stays for run 4: 3 pulls.
#[test]
fn belady_evicts_the_farthest_next_use_first() {
    let t = trace();
    let (log, pulls) = replay(&mut Belady::new(80, 70, t.uses()));
    assert_eq!(
        log,
        vec![
            (TIMER3, "L", Removal::Leftover),
            (TIMER3, "b1", Removal::Lru),
            (TIMER3, "a2", Removal::Lru),
        ]
    );
    assert_eq!(pulls, 3);
}

/// The seed's shell: gated (day 1: 62 < 80, nothing); at day 3 `image prune` removes every
/// untagged image older than 24 h: the swarm pulls a1, a2, b1 (no tag) and L. Run 4 pulls a1
/// again: 4 pulls.
#[test]
fn the_seeds_shell_removes_every_untagged_image() {
    let (log, pulls) = replay(&mut SeedShell::new(80));
    assert_eq!(
        sorted(log),
        vec![
            (TIMER3, "L", Removal::Leftover),
            (TIMER3, "a1", Removal::Other),
            (TIMER3, "a2", Removal::Other),
            (TIMER3, "b1", Removal::Other),
        ]
    );
    assert_eq!(pulls, 4);
}

/// NixOS autoPrune (`system prune --all --filter until=24h`, no gates): at day 1 00:00 (62 %,
/// below any threshold) a1 goes (created day −20, no container); at day 3 every image older
/// than 24 h: a2, b1, L. Run 4 pulls a1 again: 4 pulls.
#[test]
fn autoprune_removes_everything_old_without_gates() {
    let (log, pulls) = replay(&mut AutoPruneAll);
    assert_eq!(
        sorted(log),
        vec![
            (at(1, 0, 0), "a1", Removal::Other),
            (TIMER3, "L", Removal::Leftover),
            (TIMER3, "a2", Removal::Other),
            (TIMER3, "b1", Removal::Other),
        ]
    );
    assert_eq!(pulls, 4);
}

/// docuum, images limited to 25 units, checked after every event, least recently used first,
/// images a container uses skipped: a1 10, + b1 22, + a2 32 > 25 while a2 runs: a1 (used day 0)
/// goes (22); L appears: 27 > 25: b1 (used day 1) is older than a2 (day 2) and L (day 2 11:00):
/// b1 goes (15). Run 4 pulls a1 (25 ≤ 25: nothing). 4 pulls.
#[test]
fn docuum_keeps_images_under_its_size_least_recently_used_first() {
    let (log, pulls) = replay(&mut Docuum {
        limit_bytes: 25 * U,
    });
    assert_eq!(
        log,
        vec![
            (at(2, 10, 0), "a1", Removal::Lru),
            (at(2, 11, 0), "b1", Removal::Lru),
        ]
    );
    assert_eq!(pulls, 4);
}

/// kubelet (every 5 minutes; at ≥ 80 down to ≤ 70; least recently used, at least 2 minutes
/// old, not used by a container): usage reaches 84 with a2's deploy at day 2 10:00; the poll at
/// 10:05 (a2 still running) removes a1 (used day 0: 84 → 74 > 70) and b1 (day 1: 74 → 62).
/// L brings it to 67 (< 80), run 4's pull of a1 to 77 (< 80). 4 pulls.
#[test]
fn kubelet_collects_least_recently_used_images_at_the_high_mark() {
    let (log, pulls) = replay(&mut Kubelet { high: 80, low: 70 });
    assert_eq!(
        log,
        vec![
            (at(2, 10, 5), "a1", Removal::Lru),
            (at(2, 10, 5), "b1", Removal::Lru),
        ]
    );
    assert_eq!(pulls, 4);
}

/// The tier without the keep-recent guard (keep 0 days), on its first run under pressure: the
/// usage state has no history, and what the state has not seen counts as used now
/// (docs/prune-policy.md, "The eviction tier"), so both repositories count as deployed at this
/// very run and their newest images (a2, b1) stay even with keep 0; a1 is superseded. After L
/// (89 → 84): a1 (84 → 74); the queue is empty. The same table as with the 14-day guard: the
/// guard cannot matter before the state has history.
#[test]
fn the_tier_without_keep_recent_still_keeps_the_newest_images_on_a_first_run() {
    let tier = EvictSettings {
        low_watermark: 70,
        keep_recent: Duration::ZERO,
    };
    let (log, pulls) = replay(&mut Tiered::new(80, tier));
    assert_eq!(
        log,
        vec![
            (TIMER3, "L", Removal::Leftover),
            (TIMER3, "a1", Removal::Superseded),
        ]
    );
    assert_eq!(pulls, 4);
}

/// The tier with a history, keep-recent 1 day: the same trace with two more timer firings,
/// day 2 10:30 (after run 3's teardown) and day 4 00:00.
///
/// - day 2 10:30, usage 84, the first run under pressure: no history, so both repositories
///   count as deployed now and their newest images (a2, b1) stay; a1 is superseded: removed
///   (84 → 74; the queue is empty). L appears (79); day 3's timer: 79 < 80, nothing. Run 4
///   pulls a1 again (89).
/// - day 4 00:00, usage 89, the state has seen run 4: L goes (84). The newest image of app is
///   now a1 (the daemon got it last, day 3 10:00), deployed within the last day: kept. a2 is
///   superseded; b1 is db's newest, and db was last deployed at day 2 10:30 at the latest,
///   more than a day ago: least recently used. Both must go to reach 70 (84 − 10 − 12 = 62;
///   either alone leaves 72 or 74), so the table holds them as a set.
///
/// 4 pulls (a1, b1, a2, a1 again).
#[test]
fn the_tier_with_history_evicts_an_idle_repositorys_newest_image() {
    let t = trace_with(&[at(2, 10, 30), at(4, 0, 0)]);
    let tier = EvictSettings {
        low_watermark: 70,
        keep_recent: Duration::from_secs(86_400),
    };
    let (log, pulls) = replay_on(&t, &mut Tiered::new(80, tier));
    assert_eq!(
        sorted(log),
        vec![
            (at(2, 10, 30), "a1", Removal::Superseded),
            (at(4, 0, 0), "L", Removal::Leftover),
            (at(4, 0, 0), "a2", Removal::Superseded),
            (at(4, 0, 0), "b1", Removal::Lru),
        ]
    );
    assert_eq!(pulls, 4);
}
