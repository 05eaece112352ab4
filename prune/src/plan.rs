//! What would be removed, with sizes — pure selection over what the daemon listed.
//!
//! Image selection is done here, not by the daemon's `dangling=true` filter: a swarm service
//! pulls its image by digest and leaves it without a tag, so the daemon calls the cached
//! `redis:7-alpine` "dangling" once the service is gone. An image that carries a repo digest
//! came from a registry and *is* the cache; only images with no tag AND no repo digest (true
//! build leftovers) are candidates by default.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;

pub use crate::answers::{repo_of_digest, repo_of_tag};
use crate::answers::{BuildCacheRecord, ContainerInfo, ImageInfo, ServiceInfo};

/// Container states that count as stopped.
pub const STOPPED_STATES: [&str; 3] = ["exited", "created", "dead"];

/// A stopped container to remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerCandidate {
    pub id: String,
    pub name: String,
    pub state: String,
    pub created: i64,
}

/// Why an image is a candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ImageReason {
    /// No tag, no repo digest: built here, never pulled.
    BuildLeftover,
    /// Opt-in only: an untagged cached pull of `repo` with a newer image of `repo` in the store.
    SupersededPull { repo: String },
    /// Eviction tier ([`crate::evict`]): an older untagged cached pull of `repo` (a newer image
    /// of it is in the store), last used at `last_used` (unix seconds).
    Superseded { repo: String, last_used: i64 },
    /// Eviction tier: the newest cached pull of `repo`, not deployed within `keep_recent`,
    /// least recently used.
    LeastRecentlyUsed { repo: String, last_used: i64 },
}

impl ImageReason {
    /// True for the eviction tier's reasons.
    pub fn is_eviction(&self) -> bool {
        matches!(
            self,
            ImageReason::Superseded { .. } | ImageReason::LeastRecentlyUsed { .. }
        )
    }
}

/// An image to remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageCandidate {
    pub id: String,
    pub size: i64,
    pub created: i64,
    pub reason: ImageReason,
}

/// A build cache record the daemon's `until` prune would remove (dry run only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildCacheCandidate {
    pub id: String,
    pub kind: String,
    pub size: i64,
}

/// The plan: what a run would remove.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub containers: Vec<ContainerCandidate>,
    pub images: Vec<ImageCandidate>,
    pub build_cache: Vec<BuildCacheCandidate>,
    /// The eviction tier's queue (least recently used first), if the tier is on: a run
    /// removes from its front, re-measuring the disk after each image, down to the low
    /// watermark ([`crate::evict`]); only when usage is still at or above the threshold after
    /// the steps before.
    pub evict: Vec<ImageCandidate>,
}

impl Plan {
    /// Bytes the plan's images and build cache add up to (images: the daemon's `Size`, which
    /// may include layers shared with kept images — an upper bound).
    pub fn bytes(&self) -> u64 {
        let i: i64 = self.images.iter().map(|i| i.size.max(0)).sum();
        let b: i64 = self.build_cache.iter().map(|b| b.size.max(0)).sum();
        (i + b) as u64
    }
}

/// Everything the selection needs, as listed from the daemon.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub services: Vec<ServiceInfo>,
    pub containers: Vec<ContainerInfo>,
    pub images: Vec<ImageInfo>,
    pub build_cache: Vec<BuildCacheRecord>,
}

/// Selection rules.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Now, unix seconds.
    pub now: i64,
    pub until: Duration,
    pub reclaim_superseded_pulls: bool,
}

impl Policy {
    fn cutoff(&self) -> i64 {
        self.now
            .saturating_sub(i64::try_from(self.until.as_secs()).unwrap_or(i64::MAX))
    }
}

/// A tag list that holds no tag a user gave: empty, only `<none>:<none>`, or only
/// digest-pinned references (`repo:tag@sha256:…`).
///
/// The containerd image store lists an image a swarm service pulled by digest with a RepoTag
/// `redis:7-alpine@sha256:…` (the legacy store lists it untagged, with a repo digest). That
/// name pins a digest: nobody can `docker tag` to it, no later pull moves it, and it is what
/// the service asked for — the cached pull, exactly as on the legacy store. Counting it as
/// untagged gives both stores one classification ([`ImageKind`]).
pub fn is_untagged(tags: &[String]) -> bool {
    tags.iter()
        .all(|t| t.is_empty() || t == "<none>:<none>" || t.contains('@'))
}

/// What an image is to the policy, the same on both image stores (docs/prune-policy.md,
/// "The image stores").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageKind {
    /// A tag a user gave (a local build or a pull by tag, on either store): kept, any age.
    Tagged,
    /// No tag, a repo digest (legacy) or a digest-pinned name (containerd): it came from a
    /// registry — the cache. Only the opt-in and the eviction tier may take it.
    CachedPull,
    /// No tag, no digest: a build leftover (an untagged build, or a build whose tag moved on).
    /// On the containerd store also a pull *by tag* whose tag moved to a newer pull: that
    /// store keeps no reference for a dangling image, and the API reports it exactly like a
    /// build (measured on Docker 28.5; see the policy doc).
    Leftover,
}

/// The kind of `img` ([`ImageKind`]).
pub fn kind_of(img: &ImageInfo) -> ImageKind {
    if !is_untagged(&img.repo_tags) {
        ImageKind::Tagged
    } else if has_no_digest(&img.repo_digests) && !img.repo_tags.iter().any(|t| t.contains('@')) {
        ImageKind::Leftover
    } else {
        ImageKind::CachedPull
    }
}

/// A digest list that is empty or only `<none>@<none>`.
pub fn has_no_digest(digests: &[String]) -> bool {
    digests.iter().all(|d| d.is_empty() || d == "<none>@<none>")
}

fn digest_of(reference: &str) -> Option<&str> {
    reference.split_once('@').map(|(_, d)| d)
}

/// When a stopped container stopped, as far as the age rule goes: `State.FinishedAt`; a
/// container that never ran (`created`, or `dead` with no stop time) counts from its
/// creation. An `exited` container whose stop time is unknown has none: it is not old.
pub fn stopped_at(c: &ContainerInfo) -> Option<i64> {
    match c.state.as_str() {
        "created" | "dead" => Some(c.finished.unwrap_or(c.created).max(c.created)),
        "exited" => c.finished,
        _ => None,
    }
}

/// A stopped container may be old enough to matter: created at or before `cutoff` (it cannot
/// have stopped before it was created). Only these are inspected for their stop time.
pub fn may_be_old(c: &ContainerInfo, p: &Policy) -> bool {
    STOPPED_STATES.contains(&c.state.as_str()) && c.created <= p.cutoff()
}

/// Stopped containers (exited/created/dead) that stopped at or before `now - until`
/// ([`stopped_at`]): a container created a month ago and stopped a minute ago is young.
pub fn select_containers(containers: &[ContainerInfo], p: &Policy) -> Vec<ContainerCandidate> {
    let cutoff = p.cutoff();
    containers
        .iter()
        .filter(|c| {
            STOPPED_STATES.contains(&c.state.as_str()) && stopped_at(c).is_some_and(|t| t <= cutoff)
        })
        .map(|c| ContainerCandidate {
            id: c.id.clone(),
            name: c.name.clone(),
            state: c.state.clone(),
            created: c.created,
        })
        .collect()
}

/// Images to remove, given the containers that will still exist afterwards.
pub fn select_images<'a>(
    images: &[ImageInfo],
    remaining_containers: impl IntoIterator<Item = &'a ContainerInfo>,
    services: &[ServiceInfo],
    p: &Policy,
) -> Vec<ImageCandidate> {
    let cutoff = p.cutoff();
    let used: HashSet<&str> = remaining_containers
        .into_iter()
        .map(|c| c.image_id.as_str())
        .collect();
    let service_digests: HashSet<&str> = services
        .iter()
        .flat_map(ServiceInfo::images)
        .filter_map(digest_of)
        .collect();
    let mut out: Vec<ImageCandidate> = Vec::new();
    for img in images {
        if !is_untagged(&img.repo_tags)
            || img.created > cutoff
            || used.contains(img.id.as_str())
            || pinned_by_service(img, &service_digests)
        {
            continue;
        }
        if kind_of(img) == ImageKind::Leftover {
            out.push(ImageCandidate {
                id: img.id.clone(),
                size: img.size,
                created: img.created,
                reason: ImageReason::BuildLeftover,
            });
        } else if p.reclaim_superseded_pulls {
            let newer_repo = img
                .repo_digests
                .iter()
                .map(|d| repo_of_digest(d))
                .find(|repo| {
                    images.iter().any(|other| {
                        other.id != img.id
                            && other.created > img.created
                            && (other.repo_tags.iter().any(|t| repo_of_tag(t) == *repo)
                                || other
                                    .repo_digests
                                    .iter()
                                    .any(|d| repo_of_digest(d) == *repo))
                    })
                });
            if let Some(repo) = newer_repo {
                out.push(ImageCandidate {
                    id: img.id.clone(),
                    size: img.size,
                    created: img.created,
                    reason: ImageReason::SupersededPull {
                        repo: repo.to_string(),
                    },
                });
            }
        }
    }
    // An image that is the parent of a listed image that stays would be refused (409): leave it.
    let chosen: HashSet<&str> = out.iter().map(|c| c.id.as_str()).collect();
    let kept_parents: HashSet<&str> = images
        .iter()
        .filter(|i| !chosen.contains(i.id.as_str()) && !i.parent_id.is_empty())
        .map(|i| i.parent_id.as_str())
        .collect();
    out.retain(|c| !kept_parents.contains(c.id.as_str()));
    out
}

/// An image a service spec (current or previous) references by digest: one of its repo
/// digests, or its id — on the containerd store an image's id *is* the digest of its manifest
/// (or index), and an image pulled by tag whose tag then moved keeps neither a tag nor a repo
/// digest there, while the spec that pinned it still names it (`repo:tag@sha256:<id>`).
fn pinned_by_service(img: &ImageInfo, service_digests: &HashSet<&str>) -> bool {
    service_digests.contains(img.id.as_str())
        || img
            .repo_digests
            .iter()
            .filter_map(|d| digest_of(d))
            .any(|d| service_digests.contains(d))
}

/// Build cache records that `POST /build/prune` with only an `until` filter removes: not in
/// use, not shared, not internal/frontend, and last used (never used counts) before the cutoff.
pub fn select_build_cache(records: &[BuildCacheRecord], p: &Policy) -> Vec<BuildCacheCandidate> {
    let cutoff = p.cutoff();
    records
        .iter()
        .filter(|r| !r.in_use && !r.shared && r.kind != "internal" && r.kind != "frontend")
        .filter(|r| {
            if p.until.is_zero() {
                return true;
            }
            match r.last_used_at.as_deref().and_then(parse_time) {
                Some(t) => t <= cutoff,
                None => true,
            }
        })
        .map(|r| BuildCacheCandidate {
            id: r.id.clone(),
            kind: r.kind.clone(),
            size: r.size,
        })
        .collect()
}

fn parse_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp())
}

/// The whole plan, simulating the order of a run: containers first, so an image used only by
/// a container that goes is free afterwards.
pub fn build(inv: &Inventory, p: &Policy) -> Plan {
    let containers = select_containers(&inv.containers, p);
    let going: HashSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
    let remaining = inv
        .containers
        .iter()
        .filter(|c| !going.contains(c.id.as_str()));
    let images = select_images(&inv.images, remaining, &inv.services, p);
    let build_cache = select_build_cache(&inv.build_cache, p);
    Plan {
        containers,
        images,
        build_cache,
        evict: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::ServiceMode;

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn policy() -> Policy {
        Policy {
            now: NOW,
            until: Duration::from_secs(DAY as u64),
            reclaim_superseded_pulls: false,
        }
    }

    fn image(id: &str, tags: &[&str], digests: &[&str], age: i64) -> ImageInfo {
        ImageInfo {
            id: id.into(),
            parent_id: String::new(),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: digests.iter().map(|s| s.to_string()).collect(),
            created: NOW - age,
            size: 1000,
        }
    }

    fn container(id: &str, state: &str, image_id: &str, age: i64) -> ContainerInfo {
        ContainerInfo {
            id: id.into(),
            name: format!("n-{id}"),
            state: state.into(),
            image_id: image_id.into(),
            created: NOW - age,
            service: None,
            // stopped right after it was created (the age rule's own tests set it apart)
            finished: (state == "exited").then_some(NOW - age),
        }
    }

    fn ids(p: &Plan) -> (Vec<&str>, Vec<&str>) {
        (
            p.containers.iter().map(|c| c.id.as_str()).collect(),
            p.images.iter().map(|c| c.id.as_str()).collect(),
        )
    }

    #[test]
    fn only_old_untagged_undigested_unused_images() {
        let inv = Inventory {
            images: vec![
                image("old-leftover", &[], &[], 2 * DAY),
                image("none-none", &["<none>:<none>"], &["<none>@<none>"], 2 * DAY),
                image("young-leftover", &[], &[], DAY / 2),
                image("tagged-old", &["app:1"], &[], 30 * DAY),
                image("pulled-by-digest", &[], &["redis@sha256:aaa"], 30 * DAY),
                image("used-leftover", &[], &[], 2 * DAY),
                image("used-by-going", &[], &[], 2 * DAY),
            ],
            containers: vec![
                container("running", "running", "used-leftover", 3 * DAY),
                container("old-exited", "exited", "used-by-going", 3 * DAY),
                container("young-exited", "exited", "tagged-old", DAY / 2),
                container("old-created", "created", "tagged-old", 3 * DAY),
                container("old-dead", "dead", "tagged-old", 3 * DAY),
                container("old-paused", "paused", "tagged-old", 3 * DAY),
            ],
            ..Default::default()
        };
        let plan = build(&inv, &policy());
        let (c, i) = ids(&plan);
        assert_eq!(c, ["old-exited", "old-created", "old-dead"]);
        assert_eq!(i, ["old-leftover", "none-none", "used-by-going"]);
        assert_eq!(plan.bytes(), 3000);
    }

    /// Issue 17, item 8: a container created 30 days ago and stopped a minute ago is young; so
    /// is the image only it uses. Stopped 2 days ago it goes, and its image with it.
    #[test]
    fn stopped_containers_age_from_when_they_stopped() {
        let mut c = container("long-lived", "exited", "its-image", 30 * DAY);
        c.finished = Some(NOW - 60);
        let mut inv = Inventory {
            images: vec![image("its-image", &[], &[], 30 * DAY)],
            containers: vec![c],
            ..Default::default()
        };
        let plan = build(&inv, &policy());
        let (cs, is) = ids(&plan);
        assert!(cs.is_empty() && is.is_empty(), "{cs:?} {is:?}");
        inv.containers[0].finished = Some(NOW - 2 * DAY);
        assert_eq!(
            ids(&build(&inv, &policy())),
            (vec!["long-lived"], vec!["its-image"])
        );
        // an exited container whose stop time is unknown is not old (kept, its image too)
        inv.containers[0].finished = None;
        assert_eq!(ids(&build(&inv, &policy())).0, Vec::<&str>::new());
        // one that never ran counts from its creation; a dead one without a stop time too
        let mut created = container("never-ran", "created", "x", 2 * DAY);
        assert_eq!(stopped_at(&created), Some(NOW - 2 * DAY));
        created.state = "dead".into();
        assert_eq!(stopped_at(&created), Some(NOW - 2 * DAY));
        created.state = "running".into();
        assert_eq!(stopped_at(&created), None);
        // only stopped containers created before the cutoff are worth an inspect
        let p = policy();
        assert!(may_be_old(&container("a", "exited", "x", DAY), &p));
        assert!(!may_be_old(&container("b", "exited", "x", DAY - 1), &p));
        assert!(!may_be_old(&container("c", "running", "x", 9 * DAY), &p));
    }

    /// The same scenarios as each store lists them (measured on Docker 28.5 with the containerd
    /// store; 20.10 with the legacy store): one classification.
    #[test]
    fn both_stores_classify_alike() {
        let d = "sha256:25156cfb3f279e4e5e041ae8e2f695dc2821c6c693c666bb004714008838da7b";
        let cases = [
            // swarm pull by digest, service gone
            (
                image("a", &[], &[&format!("redis@{d}")], 0),
                ImageKind::CachedPull,
            ),
            (
                image(
                    "b",
                    &[&format!("redis:7-alpine@{d}")],
                    &[&format!("redis@{d}")],
                    0,
                ),
                ImageKind::CachedPull,
            ),
            // `docker pull repo@sha256:…`: the containerd store names it by that reference
            (
                image(
                    "c",
                    &[&format!("127.0.0.1:5000/t/sup@{d}")],
                    &[&format!("127.0.0.1:5000/t/sup@{d}")],
                    0,
                ),
                ImageKind::CachedPull,
            ),
            // tagged local build: no digest (legacy), its own digest (containerd)
            (image("d", &["app:1"], &[], 0), ImageKind::Tagged),
            (
                image("e", &["app:1"], &[&format!("app@{d}")], 0),
                ImageKind::Tagged,
            ),
            // untagged build, or a build whose tag moved on: nothing on either store
            (image("f", &[], &[], 0), ImageKind::Leftover),
            (
                image("g", &["<none>:<none>"], &["<none>@<none>"], 0),
                ImageKind::Leftover,
            ),
        ];
        for (img, want) in &cases {
            assert_eq!(kind_of(img), *want, "{img:?}");
        }
        let inv = Inventory {
            images: cases
                .iter()
                .map(|(i, _)| {
                    let mut i = i.clone();
                    i.created = NOW - 30 * DAY;
                    i
                })
                .collect(),
            ..Default::default()
        };
        let plan = build(&inv, &policy());
        let (_, i) = ids(&plan);
        assert_eq!(i, ["f", "g"]);
    }

    #[test]
    fn until_zero_takes_everything_stopped_but_never_digests() {
        let p = Policy {
            until: Duration::ZERO,
            ..policy()
        };
        let inv = Inventory {
            images: vec![
                image("new-leftover", &[], &[], 0),
                image("redis", &[], &["redis@sha256:aaa"], 0),
            ],
            ..Default::default()
        };
        let plan = build(&inv, &p);
        let (_, i) = ids(&plan);
        assert_eq!(i, ["new-leftover"]);
    }

    #[test]
    fn parent_of_a_kept_image_is_not_a_candidate() {
        let mut child = image("child", &["app:1"], &[], 2 * DAY);
        child.parent_id = "parent".into();
        let inv = Inventory {
            images: vec![image("parent", &[], &[], 2 * DAY), child],
            ..Default::default()
        };
        assert!(build(&inv, &policy()).images.is_empty());
        // parent and child both leftovers: both go (the daemon removes the parent with the child)
        let mut child = image("child", &[], &[], 2 * DAY);
        child.parent_id = "parent".into();
        let inv = Inventory {
            images: vec![image("parent", &[], &[], 2 * DAY), child],
            ..Default::default()
        };
        assert_eq!(build(&inv, &policy()).images.len(), 2);
    }

    #[test]
    fn superseded_pulls_only_with_opt_in_and_unreferenced() {
        let images = vec![
            image("old-redis", &[], &["redis@sha256:old"], 10 * DAY),
            image(
                "new-redis",
                &["redis:7-alpine"],
                &["redis@sha256:new"],
                2 * DAY,
            ),
            image("old-pg", &[], &["reg:5000/lib/pg@sha256:p1"], 10 * DAY),
            image("lonely", &[], &["solo@sha256:s"], 10 * DAY),
        ];
        let inv = Inventory {
            images: images.clone(),
            services: vec![ServiceInfo {
                id: "s".into(),
                name: "db".into(),
                mode: ServiceMode::Replicated(1),
                update_state: None,
                image: Some("reg:5000/lib/pg:16@sha256:p1".into()),
                previous_image: None,
            }],
            ..Default::default()
        };
        assert!(build(&inv, &policy()).images.is_empty());
        let p = Policy {
            reclaim_superseded_pulls: true,
            ..policy()
        };
        let plan = build(&inv, &p);
        assert_eq!(plan.images.len(), 1);
        assert_eq!(plan.images[0].id, "old-redis");
        assert_eq!(
            plan.images[0].reason,
            ImageReason::SupersededPull {
                repo: "redis".into()
            }
        );
    }

    /// Issue 17, item 11: on the containerd store an image's id is its manifest digest; a pull
    /// by tag whose tag moved lists no tag and no digest, like a build. A service spec (current
    /// or previous, any replica count) that pins that digest keeps it; nothing else does.
    #[test]
    fn a_leftover_a_service_pins_by_digest_stays() {
        let svc = |name: &str, image: Option<&str>, previous: Option<&str>| ServiceInfo {
            id: name.into(),
            name: name.into(),
            mode: ServiceMode::Replicated(0),
            update_state: None,
            image: image.map(Into::into),
            previous_image: previous.map(Into::into),
        };
        let inv = Inventory {
            images: vec![
                image("sha256:aaa", &[], &[], 30 * DAY),
                image("sha256:bbb", &[], &[], 30 * DAY),
                image("sha256:ccc", &[], &[], 30 * DAY),
                image("sha256:ddd", &[], &[], 30 * DAY),
            ],
            services: vec![
                svc("now", Some("reg:5000/app:t@sha256:aaa"), None),
                svc(
                    "rolled",
                    Some("reg:5000/app:t2"),
                    Some("reg:5000/app:t@sha256:bbb"),
                ),
                // a tag only (`--no-resolve-image`): pins no digest
                svc("by-tag", Some("reg:5000/app:ddd"), None),
            ],
            ..Default::default()
        };
        let plan = build(&inv, &policy());
        assert_eq!(ids(&plan).1, ["sha256:ccc", "sha256:ddd"]);
    }

    #[test]
    fn repo_parsing() {
        assert_eq!(repo_of_tag("redis:7-alpine"), "redis");
        assert_eq!(
            repo_of_tag("127.0.0.1:5000/library/redis:7"),
            "127.0.0.1:5000/library/redis"
        );
        assert_eq!(
            repo_of_tag("127.0.0.1:5000/library/redis"),
            "127.0.0.1:5000/library/redis"
        );
        assert_eq!(repo_of_digest("redis@sha256:abc"), "redis");
    }

    #[test]
    fn build_cache_mirrors_the_daemon_until_prune() {
        let rec = |id: &str, kind: &str, in_use: bool, shared: bool, last: Option<&str>| {
            BuildCacheRecord {
                id: id.into(),
                kind: kind.into(),
                in_use,
                shared,
                size: 10,
                created_at: None,
                last_used_at: last.map(str::to_string),
            }
        };
        let old = chrono::DateTime::from_timestamp(NOW - 2 * DAY, 0)
            .unwrap()
            .to_rfc3339();
        let young = chrono::DateTime::from_timestamp(NOW - 60, 0)
            .unwrap()
            .to_rfc3339();
        let records = vec![
            rec("old", "regular", false, false, Some(&old)),
            rec("never-used", "regular", false, false, None),
            rec("young", "regular", false, false, Some(&young)),
            rec("in-use", "regular", true, false, Some(&old)),
            rec("shared", "regular", false, true, Some(&old)),
            rec("internal", "internal", false, false, Some(&old)),
            rec("frontend", "frontend", false, false, Some(&old)),
        ];
        let got: Vec<String> = select_build_cache(&records, &policy())
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(got, ["old", "never-used"]);
        let p = Policy {
            until: Duration::ZERO,
            ..policy()
        };
        assert_eq!(select_build_cache(&records, &p).len(), 3);
    }
}
