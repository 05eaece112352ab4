//! The eviction tier: pure selection of cached pulls to evict when the disk is still at or
//! above the threshold after the leftovers went.
//!
//! A candidate is an image that came from a registry (it has a repo digest) and that
//! - no service spec references (by digest, or by tag for a spec without one), scaled to zero
//!   included;
//! - no container uses (any state, after the plan's containers went);
//! - is not the newest image of a repository deployed within `keep_recent` (the next CI run
//!   of that recipe deploys it).
//!
//! **Newest** is decided by when the daemon got the image ([`UsageState::got`]: its last pull
//! or swarm deploy seen, else when the state first saw it), the build date (`Created`) only
//! breaking ties: Nix `dockerTools` images are all dated 1970, and a rebuild is not a
//! deploy. Only images that came from a registry or were deployed compete: a cached pull, or
//! an image seen pulled or deployed by a swarm service. A tagged image nobody was seen
//! pulling or deploying (a local `R:dev` build or `docker load`) supersedes nothing — it would
//! otherwise make the deployed digest of `R` "superseded".
//!
//! The queue is ordered least recently used first ([`crate::usage`]: unknown counts as recently
//! used), then earliest got, then oldest created, then id. The run removes from the front, one image at a time,
//! re-measuring the disk after each removal, and stops as soon as usage is at or below the low
//! watermark ([`reached`]): how much deleting an image frees depends on the layers it shares
//! with the images that stay, which the image list does not tell. The queue is what a dry run
//! shows; a real run removes a prefix of it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;

use crate::answers::{ContainerInfo, ImageInfo, ServiceInfo};
use crate::plan::{kind_of, ImageCandidate, ImageKind, ImageReason, Inventory, Plan};
use crate::usage::{repos_of_image, RefIndex, UsageState};

pub use crate::config::{DEFAULT_KEEP_RECENT_DAYS, DEFAULT_LOW_WATERMARK};

/// Why a cached pull is evicted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum EvictReason {
    /// An older image of `repo`: a newer one is in the store.
    Superseded { repo: String },
    /// The newest image of `repo`, not deployed within `keep_recent`, least recently used.
    LeastRecentlyUsed { repo: String },
}

/// One image in the eviction queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvictCandidate {
    pub id: String,
    /// The daemon's `Size` (includes layers shared with images that stay: an upper bound of
    /// what deleting it frees).
    pub size: i64,
    pub created: i64,
    /// Last used (unix seconds), per the usage state; unknown counts as now.
    pub last_used: i64,
    pub reason: EvictReason,
}

/// The tier's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvictPolicy {
    /// Now, unix seconds.
    pub now: i64,
    /// The newest image of a repository deployed within this window is kept.
    pub keep_recent: Duration,
    /// Evict down to this usage (percent).
    pub low_watermark: u8,
    /// The age guard: an image whose use was *seen* within this window (a pull, a container
    /// created from it, a service or container listing it: [`UsageState::last_observed`]) is
    /// not evicted. `until` by default.
    pub min_age: Duration,
}

/// A removal that lowered the used bytes of the image data's filesystems by less than this
/// did not help (its layers are shared with images that stay, or something else filled the
/// space it freed).
pub const MIN_RELIEF_BYTES: u64 = 1 << 20;
/// The tier stops after this many removals in a row that did not help: evicting has stopped
/// lowering usage (the space is held by something else), so the rest of the queue would go
/// for nothing.
pub const NO_RELIEF_STOP: usize = 3;

/// Did a removal help: used bytes went from `before` to `after`, at least
/// [`MIN_RELIEF_BYTES`] lower.
pub fn relieved(before: u64, after: u64) -> bool {
    before.saturating_sub(after) >= MIN_RELIEF_BYTES
}

/// True when eviction can stop: `usage_pct` at or below the low watermark.
pub fn reached(usage_pct: u8, p: &EvictPolicy) -> bool {
    usage_pct <= p.low_watermark
}

/// The eviction queue: cached pulls that may go, least recently used first.
/// `images` and `containers` are what stays after the plan's leftovers and containers went.
pub fn select<'a>(
    images: &[ImageInfo],
    containers: impl IntoIterator<Item = &'a ContainerInfo>,
    services: &[ServiceInfo],
    state: &UsageState,
    p: &EvictPolicy,
) -> Vec<EvictCandidate> {
    let in_use: HashSet<&str> = containers
        .into_iter()
        .map(|c| c.image_id.as_str())
        .collect();
    let refs = RefIndex::new(images);
    let referenced: HashSet<&str> = services
        .iter()
        .flat_map(ServiceInfo::images)
        .filter_map(|r| refs.resolve(r))
        .collect();
    // newest image of each repository: by when the daemon got it, then by created (ties all
    // count as newest); only images from a registry compete
    let got = |img: &ImageInfo| (state.got(&img.id).unwrap_or(p.now), img.created);
    let mut newest: HashMap<String, (i64, i64)> = HashMap::new();
    for img in images
        .iter()
        .filter(|i| kind_of(i) == ImageKind::CachedPull || state.last_got(&i.id).is_some())
    {
        for repo in repos_of_image(img) {
            let e = newest.entry(repo).or_insert(got(img));
            *e = (*e).max(got(img));
        }
    }
    let keep = i64::try_from(p.keep_recent.as_secs()).unwrap_or(i64::MAX);
    let min_age = i64::try_from(p.min_age.as_secs()).unwrap_or(i64::MAX);
    let young = |id: &str| {
        state
            .last_observed(id)
            .is_some_and(|t| t > p.now.saturating_sub(min_age))
    };
    let recent = |repo: &str| {
        state
            .last_deployed(repo)
            .is_some_and(|t| t >= p.now.saturating_sub(keep))
    };
    let mut out = Vec::new();
    let mut order: HashMap<String, i64> = HashMap::new();
    for img in images {
        // Only a cached pull (no tag; a repo digest, or on the containerd store a
        // digest-pinned name): a tagged image is never evicted (deleting it by id would untag
        // it: someone pulled or built it by name), a leftover is the plan's.
        if kind_of(img) != ImageKind::CachedPull
            || in_use.contains(img.id.as_str())
            || referenced.contains(img.id.as_str())
            || young(&img.id)
        {
            continue;
        }
        let repos = repos_of_image(img);
        let newest_of: Vec<&String> = repos
            .iter()
            .filter(|r| newest.get(*r).is_some_and(|n| got(img) >= *n))
            .collect();
        if newest_of.iter().any(|r| recent(r)) {
            continue;
        }
        let reason = match repos.iter().find(|r| !newest_of.contains(r)) {
            Some(repo) => EvictReason::Superseded { repo: repo.clone() },
            None => EvictReason::LeastRecentlyUsed {
                repo: repos.first().cloned().unwrap_or_default(),
            },
        };
        order.insert(img.id.clone(), got(img).0);
        out.push(EvictCandidate {
            id: img.id.clone(),
            size: img.size,
            created: img.created,
            last_used: state.last_used(&img.id).unwrap_or(p.now),
            reason,
        });
    }
    let got_of = |c: &EvictCandidate| order.get(&c.id).copied().unwrap_or(p.now);
    out.sort_by(|a, b| {
        (a.last_used, got_of(a), a.created, &a.id).cmp(&(b.last_used, got_of(b), b.created, &b.id))
    });
    out
}

/// The plan's eviction queue: [`select`] over what stays once the plan's containers and
/// images went, as the plan's image candidates (reasons `superseded`, `least_recently_used`).
pub fn queue(
    plan: &Plan,
    inv: &Inventory,
    state: &UsageState,
    p: &EvictPolicy,
) -> Vec<ImageCandidate> {
    let going_c: HashSet<&str> = plan.containers.iter().map(|c| c.id.as_str()).collect();
    let going_i: HashSet<&str> = plan.images.iter().map(|i| i.id.as_str()).collect();
    let images: Vec<ImageInfo> = inv
        .images
        .iter()
        .filter(|i| !going_i.contains(i.id.as_str()))
        .cloned()
        .collect();
    let containers = inv
        .containers
        .iter()
        .filter(|c| !going_c.contains(c.id.as_str()));
    select(&images, containers, &inv.services, state, p)
        .into_iter()
        .map(|c| ImageCandidate {
            id: c.id,
            size: c.size,
            created: c.created,
            reason: match c.reason {
                EvictReason::Superseded { repo } => ImageReason::Superseded {
                    repo,
                    last_used: c.last_used,
                },
                EvictReason::LeastRecentlyUsed { repo } => ImageReason::LeastRecentlyUsed {
                    repo,
                    last_used: c.last_used,
                },
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::ServiceMode;
    use crate::usage::{Observation, UsageEvent};

    const DAY: i64 = 86_400;
    const NOW: i64 = 100 * DAY;

    fn img(id: &str, tags: &[&str], digests: &[&str], created: i64) -> ImageInfo {
        ImageInfo {
            id: id.into(),
            parent_id: String::new(),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: digests.iter().map(|s| s.to_string()).collect(),
            created,
            size: 100,
        }
    }

    fn policy() -> EvictPolicy {
        EvictPolicy {
            now: NOW,
            keep_recent: Duration::from_secs(14 * DAY as u64),
            low_watermark: 70,
            min_age: Duration::ZERO,
        }
    }

    /// A state where each (image ref, time) was used by a swarm task at that time.
    fn state(images: &[ImageInfo], uses: &[(&str, i64)]) -> UsageState {
        let mut s = UsageState::new();
        s.observe(&Observation {
            now: 0,
            boot_id: None,
            images,
            services: &[],
            containers: &[],
            events: &[],
            marks: None,
        });
        let events: Vec<UsageEvent> = uses
            .iter()
            .map(|(r, t)| UsageEvent::ContainerCreate {
                time: *t,
                image: r.to_string(),
                swarm: true,
            })
            .collect();
        s.observe(&Observation {
            now: NOW,
            boot_id: None,
            images,
            services: &[],
            containers: &[],
            events: &events,
            marks: None,
        });
        s
    }

    fn ids(q: &[EvictCandidate]) -> Vec<&str> {
        q.iter().map(|c| c.id.as_str()).collect()
    }

    #[test]
    fn only_unreferenced_unused_pulls_lru_first_newest_of_recent_repos_kept() {
        let images = vec![
            img("app-v1", &[], &["app@sha256:1"], DAY),
            img("app-v2", &[], &["app@sha256:2"], 50 * DAY),
            img("old-v1", &[], &["old@sha256:1"], DAY),
            img("db-v1", &[], &["db@sha256:1"], DAY),
            img("leftover", &[], &[], DAY),
            img("built", &["ci/build:latest"], &[], DAY),
            img("tagged-pull", &["old:stable"], &["old@sha256:0"], 0),
            img("svc0", &[], &["zero@sha256:1"], DAY),
            img("ctr", &[], &["ctr@sha256:1"], DAY),
        ];
        let s = state(
            &images,
            &[
                ("app@sha256:2", NOW - DAY),      // app deployed yesterday: v2 kept
                ("app@sha256:1", NOW - 3 * DAY),  // v1 superseded
                ("old@sha256:1", NOW - 40 * DAY), // old not deployed for 40 days: LRU
                ("db@sha256:1", NOW - 2 * DAY),   // db deployed recently: newest kept
            ],
        );
        let services = [ServiceInfo {
            id: "s".into(),
            name: "scaled-to-zero".into(),
            mode: ServiceMode::Replicated(0),
            update_state: None,
            image: Some("zero:1@sha256:1".into()),
            previous_image: None,
        }];
        let containers = [ContainerInfo {
            id: "c".into(),
            name: "c".into(),
            state: "exited".into(),
            image_id: "ctr".into(),
            created: 0,
            service: None,
            finished: None,
        }];
        let q = select(&images, &containers, &services, &s, &policy());
        assert_eq!(ids(&q), ["old-v1", "app-v1"]);
        assert_eq!(
            q[0].reason,
            EvictReason::LeastRecentlyUsed { repo: "old".into() }
        );
        assert_eq!(q[1].reason, EvictReason::Superseded { repo: "app".into() });
        // keep_recent zero: newest images of deployed repos become candidates too
        let p = EvictPolicy {
            keep_recent: Duration::ZERO,
            ..policy()
        };
        let q = select(&images, &containers, &services, &s, &p);
        assert_eq!(ids(&q), ["old-v1", "app-v1", "db-v1", "app-v2"]);
    }

    #[test]
    fn unknown_usage_goes_last() {
        let images = vec![
            img("known", &[], &["a@sha256:1"], DAY),
            img("newer", &[], &["a@sha256:2"], 2 * DAY),
        ];
        let s = state(&images, &[("a@sha256:1", NOW - 30 * DAY)]);
        let mut s2 = s.clone();
        s2.images.remove("known");
        let p = EvictPolicy {
            keep_recent: Duration::ZERO,
            ..policy()
        };
        // "newer" was first seen at 0 in the state; "known" used at NOW-30d
        assert_eq!(ids(&select(&images, [], &[], &s, &p)), ["newer", "known"]);
        // without an entry, "known" counts as used now: last
        assert_eq!(ids(&select(&images, [], &[], &s2, &p)), ["newer", "known"]);
        assert_eq!(select(&images, [], &[], &s2, &p)[1].last_used, NOW);
    }

    #[test]
    fn a_containerd_store_swarm_pull_is_a_cached_pull() {
        // the containerd store lists a swarm pull with a digest-pinned RepoTag
        let images = vec![
            img("c-v1", &["app:1@sha256:1"], &[], DAY),
            img("c-v2", &["app:2@sha256:2"], &[], 2 * DAY),
        ];
        let s = state(&images, &[("app:2@sha256:2", NOW - DAY)]);
        let q = select(&images, [], &[], &s, &policy());
        assert_eq!(ids(&q), ["c-v1"]);
        assert_eq!(q[0].reason, EvictReason::Superseded { repo: "app".into() });
    }

    #[test]
    fn the_watermark_stops_eviction() {
        assert!(reached(70, &policy()));
        assert!(reached(12, &policy()));
        assert!(!reached(71, &policy()));
    }

    /// Issue 17, item 6: an image seen used (here: pulled) within the age guard is not
    /// evicted, superseded or not; one only *assumed* used (first sight, a lost window) is
    /// not protected by the guard — it goes last by the LRU order instead.
    #[test]
    fn the_age_guard_keeps_what_was_seen_used_within_it() {
        let images = vec![
            img("v1", &[], &["app@sha256:1"], DAY),
            img("v2", &[], &["app@sha256:2"], 2 * DAY),
            img("w1", &[], &["web@sha256:1"], DAY),
            img("w2", &["web:2"], &["web@sha256:2"], 2 * DAY),
        ];
        let mut s = state(&images, &[("app@sha256:2", NOW - DAY)]);
        // v1 pulled an hour ago (superseded by v2 all the same); w1 only first seen
        s.observe(&Observation {
            now: NOW,
            boot_id: None,
            images: &images,
            services: &[],
            containers: &[],
            // (v2 pulled after it: still the newest the daemon got)
            events: &[
                UsageEvent::Pull {
                    time: NOW - 3600,
                    reference: "app@sha256:1".into(),
                },
                UsageEvent::Pull {
                    time: NOW - 60,
                    reference: "app@sha256:2".into(),
                },
            ],
            marks: None,
        });
        let guarded = |secs: u64| EvictPolicy {
            min_age: Duration::from_secs(secs),
            ..policy()
        };
        assert_eq!(
            ids(&select(&images, [], &[], &s, &guarded(0))),
            ["w1", "v1"]
        );
        // 24 h: v1 was pulled an hour ago: kept; w1 was never seen used: not guarded
        assert_eq!(ids(&select(&images, [], &[], &s, &guarded(86_400))), ["w1"]);
        // 30 min: the pull is older than the guard
        assert_eq!(
            ids(&select(&images, [], &[], &s, &guarded(1800))),
            ["w1", "v1"]
        );
    }

    /// Issue 17, item 10: the image of a service's `PreviousSpec` (what a rollback deploys)
    /// is referenced like its current one: never evicted.
    #[test]
    fn a_services_rollback_image_is_referenced() {
        let images = vec![
            img("v1", &[], &["app@sha256:1"], DAY),
            img("v2", &[], &["app@sha256:2"], 2 * DAY),
        ];
        let s = state(&images, &[]);
        let p = EvictPolicy {
            keep_recent: Duration::ZERO,
            ..policy()
        };
        let mut svc = ServiceInfo {
            id: "s".into(),
            name: "app".into(),
            mode: ServiceMode::Replicated(1),
            update_state: None,
            image: Some("app:2@sha256:2".into()),
            previous_image: None,
        };
        assert_eq!(ids(&select(&images, [], &[svc.clone()], &s, &p)), ["v1"]);
        svc.previous_image = Some("app:1@sha256:1".into());
        assert!(select(&images, [], &[svc], &s, &p).is_empty());
    }

    /// Issue 17, item 9, by hand: "newest of a repository" is who the daemon got last. Two
    /// Nix-style images both dated 1970: the one pulled 10 days ago is superseded by the one
    /// pulled 2 days ago (before: a tie, both newest, nothing queued). A local `app:dev`
    /// build dated later than the deployed digest supersedes nothing (before: the deployed
    /// digest was queued), until the events show it pulled.
    #[test]
    fn newest_is_what_the_daemon_got_last_not_the_build_date() {
        let images = vec![
            img("n1", &[], &["nix@sha256:1"], 1),
            img("n2", &[], &["nix@sha256:2"], 1),
            img("dep", &[], &["app@sha256:1"], DAY),
            // the containerd store lists a digest for a local build too
            img("dev", &["app:dev"], &["app@sha256:9"], 90 * DAY),
        ];
        let mut s = state(
            &images,
            &[("nix@sha256:2", NOW - DAY), ("app@sha256:1", NOW - DAY)],
        );
        let pull = |t: i64, r: &str| UsageEvent::Pull {
            time: t,
            reference: r.into(),
        };
        s.observe(&Observation {
            now: NOW,
            boot_id: None,
            images: &images,
            services: &[],
            containers: &[],
            events: &[
                pull(NOW - 10 * DAY, "nix@sha256:1"),
                pull(NOW - 2 * DAY, "nix@sha256:2"),
            ],
            marks: None,
        });
        let q = select(&images, [], &[], &s, &policy());
        assert_eq!(ids(&q), ["n1"]);
        assert_eq!(q[0].reason, EvictReason::Superseded { repo: "nix".into() });
        // the dev image seen pulled an hour ago: it came from a registry, the deployed digest
        // is superseded now (and goes after n1: used a day ago, n1 ten)
        s.observe(&Observation {
            now: NOW,
            boot_id: None,
            images: &images,
            services: &[],
            containers: &[],
            events: &[pull(NOW - 3600, "app:dev")],
            marks: None,
        });
        let q = select(&images, [], &[], &s, &policy());
        assert_eq!(ids(&q), ["n1", "dep"]);
        assert_eq!(q[1].reason, EvictReason::Superseded { repo: "app".into() });
        // n1 deployed again by a swarm task (an upgrade test starting from it): now it is the
        // newest the daemon got, n2 the superseded one
        s.observe(&Observation {
            now: NOW,
            boot_id: None,
            images: &images,
            services: &[],
            containers: &[],
            events: &[UsageEvent::ContainerCreate {
                time: NOW - 60,
                image: "nix@sha256:1".into(),
                swarm: true,
            }],
            marks: None,
        });
        // (both last used and got a day ago: the older build date goes first)
        let q = select(&images, [], &[], &s, &policy());
        assert_eq!(ids(&q), ["n2", "dep"]);
    }

    #[test]
    fn a_removal_helps_when_it_frees_a_mebibyte() {
        const MIB: u64 = 1 << 20;
        assert!(relieved(10 * MIB, 9 * MIB));
        assert!(!relieved(10 * MIB, 10 * MIB - MIB + 1));
        // usage that grew meanwhile (a CI run writing) is no relief either
        assert!(!relieved(10 * MIB, 11 * MIB));
    }
}
