//! The state explorer's fast variant (issue 17): generated daemon inventories, as either image
//! store lists them, through the real decision code (`plan::build`, then `evict::queue`), and
//! the prune's promises checked on every plan against a small reference model written here,
//! not taken from the code under test:
//!
//! - nothing a plain tag, a container in any state that stays, or a service spec (current or
//!   previous, by digest or by the image id a containerd store lists) references is removed;
//! - no image is both a leftover and in the eviction queue, nothing is listed twice;
//! - a running, paused or restarting container is never removed, a stopped one only when it
//!   stopped at or before the cutoff;
//! - without the opt-in, the plan's images are build leftovers only (no tag, no digest);
//! - the eviction queue holds only cached pulls whose use was not seen within the age guard,
//!   least recently used first;
//! - completeness: every old, unreferenced leftover that is nobody's parent is in the plan (a
//!   prune that does nothing would pass the rest).
//!
//! The real-daemon variant (the sandbox suites `prune_tier`, `prune_state`, `prune_settled`)
//! checks the same promises on states a daemon really lists.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use ci_docker_prune::docker::{ContainerInfo, ImageInfo, ServiceInfo, ServiceMode};
use ci_docker_prune::evict::{self, EvictPolicy};
use ci_docker_prune::plan::{self, Inventory, Policy};
use ci_docker_prune::usage::UsageState;
use proptest::prelude::*;

const DAY: i64 = 86_400;
const NOW: i64 = 1_800_000_000;
const REPOS: [&str; 4] = ["redis", "127.0.0.1:5000/ci/app", "pg", "ghcr.io/o/tool"];
const STATES: [&str; 7] = [
    "created",
    "running",
    "paused",
    "restarting",
    "removing",
    "exited",
    "dead",
];

fn digest(n: usize) -> String {
    format!("sha256:{n:064x}")
}

/// One generated image, before ids are fixed.
#[derive(Debug, Clone)]
struct GenImage {
    repo: usize,
    /// plain tags: indexes into a small tag pool of the image's repository
    tags: Vec<u8>,
    /// listed with a repo digest (a pull), else a build or a pull whose tag moved
    pulled: bool,
    /// the containerd store's digest-pinned name `repo:tag@sha256:…`
    pinned_name: bool,
    /// age in seconds; `None`: dated 1970 (Nix dockerTools)
    age: Option<i64>,
    parent: Option<usize>,
    size: i64,
}

#[derive(Debug, Clone)]
struct GenContainer {
    state: usize,
    image: usize,
    age: i64,
    stopped_ago: Option<i64>,
    swarm: bool,
}

#[derive(Debug, Clone)]
enum GenRef {
    /// `repo:tag@digest` of image n (its listed digest, or its id on the containerd store)
    Digest(usize),
    /// `repo:tag` by tag of the image's repository
    Tag(usize, u8),
    /// a digest no image has (the service's image is gone)
    Missing,
}

#[derive(Debug, Clone)]
struct GenService {
    current: Option<GenRef>,
    previous: Option<GenRef>,
    replicas: u64,
}

#[derive(Debug, Clone)]
struct World {
    containerd: bool,
    images: Vec<GenImage>,
    containers: Vec<GenContainer>,
    services: Vec<GenService>,
    until_zero: bool,
    reclaim: bool,
    /// per image: last used / last observed ages (None: unknown)
    used: Vec<(Option<i64>, Option<i64>)>,
    deployed: Vec<Option<i64>>,
}

fn age() -> impl Strategy<Value = i64> {
    prop_oneof![0..DAY, DAY..60 * DAY]
}

fn gen_image() -> impl Strategy<Value = GenImage> {
    (
        0..REPOS.len(),
        prop::collection::vec(0u8..3, 0..3),
        any::<bool>(),
        any::<bool>(),
        prop::option::weighted(0.9, age()),
        prop::option::weighted(0.15, 0usize..12),
        1i64..1_000_000,
    )
        .prop_map(
            |(repo, tags, pulled, pinned_name, age, parent, size)| GenImage {
                repo,
                tags,
                pulled,
                pinned_name,
                age,
                parent,
                size,
            },
        )
}

fn gen_ref() -> impl Strategy<Value = GenRef> {
    prop_oneof![
        3 => (0usize..12).prop_map(GenRef::Digest),
        1 => (0usize..12, 0u8..3).prop_map(|(i, t)| GenRef::Tag(i, t)),
        1 => Just(GenRef::Missing),
    ]
}

fn world() -> impl Strategy<Value = World> {
    (
        any::<bool>(),
        prop::collection::vec(gen_image(), 0..12),
        prop::collection::vec(
            (
                0..STATES.len(),
                0usize..14,
                age(),
                prop::option::of(age()),
                any::<bool>(),
            )
                .prop_map(|(state, image, age, stopped_ago, swarm)| GenContainer {
                    state,
                    image,
                    age,
                    stopped_ago,
                    swarm,
                }),
            0..8,
        ),
        prop::collection::vec(
            (
                prop::option::weighted(0.9, gen_ref()),
                prop::option::of(gen_ref()),
                0u64..3,
            )
                .prop_map(|(current, previous, replicas)| GenService {
                    current,
                    previous,
                    replicas,
                }),
            0..4,
        ),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec((prop::option::of(age()), prop::option::of(age())), 12),
        prop::collection::vec(prop::option::of(age()), REPOS.len()),
    )
        .prop_map(
            |(containerd, images, containers, services, until_zero, reclaim, used, deployed)| {
                World {
                    containerd,
                    images,
                    containers,
                    services,
                    until_zero,
                    reclaim,
                    used,
                    deployed,
                }
            },
        )
}

/// An image as the daemon lists it, and the manifest digest a service may pin.
struct Listed {
    info: ImageInfo,
    manifest: String,
}

fn list(w: &World) -> Vec<Listed> {
    let n = w.images.len();
    w.images
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let repo = REPOS[g.repo];
            let manifest = digest(1000 + i);
            // the containerd store lists an image by its manifest digest; the legacy store by
            // its config digest
            let id = if w.containerd {
                manifest.clone()
            } else {
                digest(i)
            };
            let mut tags: Vec<String> = g.tags.iter().map(|t| format!("{repo}:t{t}")).collect();
            tags.sort();
            tags.dedup();
            let mut digests = Vec::new();
            if g.pulled {
                digests.push(format!("{repo}@{manifest}"));
                if w.containerd && g.pinned_name {
                    tags.push(format!("{repo}:t0@{manifest}"));
                }
            }
            let parent = g
                .parent
                .filter(|p| *p < i && *p < n)
                .map(|p| {
                    if w.containerd {
                        digest(1000 + p)
                    } else {
                        digest(p)
                    }
                })
                .unwrap_or_default();
            Listed {
                info: ImageInfo {
                    id,
                    parent_id: parent,
                    repo_tags: tags,
                    repo_digests: digests,
                    created: g.age.map(|a| NOW - a).unwrap_or(0),
                    size: g.size,
                },
                manifest,
            }
        })
        .collect()
}

fn reference(w: &World, listed: &[Listed], r: &GenRef) -> String {
    match r {
        GenRef::Digest(i) => match listed.get(*i) {
            Some(l) => format!("{}:t0@{}", REPOS[w.images[*i].repo], l.manifest),
            None => format!("redis:t0@{}", digest(9999)),
        },
        GenRef::Tag(i, t) => {
            let repo = w.images.get(*i).map(|g| REPOS[g.repo]).unwrap_or("redis");
            format!("{repo}:t{t}")
        }
        GenRef::Missing => format!("pg:t1@{}", digest(8888)),
    }
}

struct Case {
    inv: Inventory,
    state: UsageState,
    policy: Policy,
    evict: EvictPolicy,
}

fn case(w: &World) -> Case {
    let listed = list(w);
    let ids: Vec<String> = listed.iter().map(|l| l.info.id.clone()).collect();
    let containers = w
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let state = STATES[c.state];
            let created = NOW - c.age;
            ContainerInfo {
                id: format!("c{i}"),
                name: format!("n{i}"),
                state: state.into(),
                image_id: ids.get(c.image).cloned().unwrap_or_else(|| digest(7777)),
                created,
                service: c.swarm.then(|| "ci_run".to_string()),
                finished: c.stopped_ago.map(|a| (NOW - a).max(created)),
            }
        })
        .collect();
    let services = w
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| ServiceInfo {
            id: format!("s{i}"),
            name: format!("svc{i}"),
            mode: ServiceMode::Replicated(s.replicas),
            update_state: None,
            image: s.current.as_ref().map(|r| reference(w, &listed, r)),
            previous_image: s.previous.as_ref().map(|r| reference(w, &listed, r)),
        })
        .collect();
    let mut state = UsageState::new();
    for (i, id) in ids.iter().enumerate() {
        let (used, observed) = w.used[i];
        if let Some(a) = used {
            state.images.insert(id.clone(), NOW - a);
        }
        if let Some(a) = observed {
            state.observed.insert(id.clone(), NOW - a);
        }
    }
    for (r, d) in REPOS.iter().zip(&w.deployed) {
        if let Some(a) = d {
            state.repos.insert(r.to_string(), NOW - a);
        }
    }
    let until = if w.until_zero {
        Duration::ZERO
    } else {
        Duration::from_secs(DAY as u64)
    };
    Case {
        inv: Inventory {
            services,
            containers,
            images: listed.into_iter().map(|l| l.info).collect(),
            build_cache: Vec::new(),
        },
        state,
        policy: Policy {
            now: NOW,
            until,
            reclaim_superseded_pulls: w.reclaim,
        },
        evict: EvictPolicy {
            now: NOW,
            keep_recent: Duration::from_secs(14 * DAY as u64),
            low_watermark: 70,
            min_age: until,
        },
    }
}

/// A tag a user gave: not empty, not `<none>:<none>`, not digest-pinned.
fn plain(tag: &str) -> bool {
    !tag.is_empty() && tag != "<none>:<none>" && !tag.contains('@')
}

/// The reference model: the ids nothing may remove, and why.
fn protected(c: &Case, going_containers: &HashSet<&str>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for img in &c.inv.images {
        if img.repo_tags.iter().any(|t| plain(t)) {
            out.insert(img.id.clone(), "a plain tag".into());
        }
    }
    for ct in &c.inv.containers {
        if !going_containers.contains(ct.id.as_str()) {
            out.insert(
                ct.image_id.clone(),
                format!("container {} ({}) stays", ct.id, ct.state),
            );
        }
    }
    for s in &c.inv.services {
        for r in [&s.image, &s.previous_image].into_iter().flatten() {
            let Some((_, d)) = r.split_once('@') else {
                continue; // by tag: the tag itself protects (plain tags above)
            };
            for img in &c.inv.images {
                let listed_digest = img
                    .repo_digests
                    .iter()
                    .chain(&img.repo_tags)
                    .any(|x| x.split_once('@').is_some_and(|(_, xd)| xd == d));
                // the containerd store lists an image by its manifest digest: the id is what a
                // service pins (the legacy store's id is the config digest; a pull there keeps
                // its repo digest, listed above)
                if listed_digest || img.id == d {
                    out.insert(img.id.clone(), format!("service {} pins {r}", s.name));
                }
            }
        }
    }
    out
}

fn check(w: &World) -> Result<(), TestCaseError> {
    let c = case(w);
    let mut p = plan::build(&c.inv, &c.policy);
    p.evict = evict::queue(&p, &c.inv, &c.state, &c.evict);
    let cutoff = NOW - c.policy.until.as_secs() as i64;

    // containers: only stopped ones, stopped at or before the cutoff
    let mut seen = HashSet::new();
    for pc in &p.containers {
        prop_assert!(seen.insert(pc.id.clone()), "container {} twice", pc.id);
        let ct = c.inv.containers.iter().find(|x| x.id == pc.id);
        let Some(ct) = ct else {
            return Err(TestCaseError::fail(format!("unknown container {}", pc.id)));
        };
        let stopped = match ct.state.as_str() {
            "exited" => ct.finished,
            "created" | "dead" => Some(ct.finished.unwrap_or(ct.created).max(ct.created)),
            _ => None,
        };
        prop_assert!(
            stopped.is_some_and(|t| t <= cutoff),
            "container {} in state {} (stopped {:?}, cutoff {cutoff}) removed",
            ct.id,
            ct.state,
            stopped
        );
    }
    let going: HashSet<&str> = p.containers.iter().map(|x| x.id.as_str()).collect();
    let guard = protected(&c, &going);

    let mut removed = HashSet::new();
    for (list, what) in [(&p.images, "plan"), (&p.evict, "evict")] {
        for ic in list.iter() {
            prop_assert!(removed.insert(ic.id.clone()), "{} listed twice", ic.id);
            let img = c.inv.images.iter().find(|i| i.id == ic.id);
            let Some(img) = img else {
                return Err(TestCaseError::fail(format!("unknown image {}", ic.id)));
            };
            if let Some(why) = guard.get(&ic.id) {
                return Err(TestCaseError::fail(format!(
                    "{what} removes {} ({:?} {:?}) although {why}",
                    ic.id, img.repo_tags, img.repo_digests
                )));
            }
            let has_digest = img
                .repo_digests
                .iter()
                .chain(&img.repo_tags)
                .any(|x| x.contains('@') && x != "<none>@<none>");
            if what == "plan" {
                prop_assert!(img.created <= cutoff, "young image {} removed", img.id);
                if !c.policy.reclaim_superseded_pulls {
                    prop_assert!(
                        !has_digest,
                        "cached pull {} taken without the opt-in",
                        img.id
                    );
                }
            } else {
                prop_assert!(has_digest, "evicting {} which is no cached pull", img.id);
                let seen_at = c.state.observed.get(&img.id).copied();
                prop_assert!(
                    seen_at.is_none_or(|t| t <= NOW - c.evict.min_age.as_secs() as i64),
                    "evicting {} seen used at {:?} within the age guard",
                    img.id,
                    seen_at
                );
            }
        }
    }
    // least recently used first (unknown counts as now)
    let last: Vec<i64> = p
        .evict
        .iter()
        .map(|i| c.state.images.get(&i.id).copied().unwrap_or(NOW))
        .collect();
    prop_assert!(
        last.windows(2).all(|w| w[0] <= w[1]),
        "queue not least recently used first: {last:?}"
    );

    // completeness: an old leftover nothing references and nobody's parent is taken
    let parents: HashSet<&str> = c
        .inv
        .images
        .iter()
        .map(|i| i.parent_id.as_str())
        .filter(|p| !p.is_empty())
        .collect();
    for img in &c.inv.images {
        let leftover = img.repo_tags.iter().all(|t| !plain(t) && !t.contains('@'))
            && img
                .repo_digests
                .iter()
                .all(|d| d.is_empty() || d == "<none>@<none>");
        if leftover
            && img.created <= cutoff
            && !guard.contains_key(&img.id)
            && !parents.contains(img.id.as_str())
        {
            prop_assert!(
                p.images.iter().any(|i| i.id == img.id),
                "old unreferenced leftover {} not removed",
                img.id
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_plan_keeps_every_promise_on_generated_inventories(w in world()) {
        check(&w)?;
    }
}

/// The counterexample the generator found first (issue 17, item 11): on the containerd store,
/// a pull by tag whose tag then moved is listed with no name and no digest, like a build; a
/// service scaled to zero pins it by the digest that is its id there.
#[test]
fn a_moved_tag_pull_a_service_pins_is_no_leftover() {
    let w = World {
        containerd: true,
        images: vec![GenImage {
            repo: 0,
            tags: vec![],
            pulled: false,
            pinned_name: false,
            age: Some(30 * DAY),
            parent: None,
            size: 10,
        }],
        containers: vec![],
        services: vec![GenService {
            current: Some(GenRef::Digest(0)),
            previous: None,
            replicas: 0,
        }],
        until_zero: false,
        reclaim: false,
        used: vec![(None, None); 12],
        deployed: vec![None; REPOS.len()],
    };
    check(&w).unwrap();
}
