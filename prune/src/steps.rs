//! The removal steps of a run, in order, and what each one removes: the plan's items, one
//! request per item, and what each removal did. A dry run shows these items, a real run
//! removes them ([`crate::actions`]); their log lines are worded in [`crate::report`].

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;

use crate::docker::{DockerClient, DockerError, Removal};
use crate::plan::{
    has_no_digest, is_untagged, BuildCacheCandidate, ContainerCandidate, ImageCandidate,
    ImageReason, Plan,
};

/// A removal step, in run order. Every gate is checked again right before each one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Containers,
    Images,
    BuildCache,
    /// The eviction tier: only while usage is at or above the threshold, down to the low
    /// watermark (see [`crate::actions`]).
    Evict,
}

impl Step {
    /// Every step, in run order.
    pub const ALL: [Step; 4] = [
        Step::Containers,
        Step::Images,
        Step::BuildCache,
        Step::Evict,
    ];

    /// What this step removes of `plan`, in order. The build cache step is always one item:
    /// the daemon's `until` prune.
    pub fn items(self, plan: &Plan, until: Duration) -> Vec<Item<'_>> {
        match self {
            Step::Containers => plan.containers.iter().map(Item::Container).collect(),
            Step::Images => plan.images.iter().map(Item::Image).collect(),
            Step::BuildCache => vec![Item::BuildCache {
                until,
                predicted: &plan.build_cache,
            }],
            Step::Evict => plan.evict.iter().map(Item::Image).collect(),
        }
    }
}

/// One removal: one request to the daemon (an image: its re-inspection first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// `DELETE /containers/{id}`, volumes kept, never forced.
    Container(&'a ContainerCandidate),
    /// `GET /images/{id}/json`, then `DELETE /images/{id}`, never forced.
    Image(&'a ImageCandidate),
    /// `POST /build/prune` with the single filter `until`: the daemon picks the records.
    /// `predicted` are the records the plan expects it to pick (listed in a dry run only).
    BuildCache {
        until: Duration,
        predicted: &'a [BuildCacheCandidate],
    },
}

impl Item<'_> {
    /// The id a failure of this item is reported under (the build cache prune has none).
    pub fn id(&self) -> &str {
        match self {
            Item::Container(c) => &c.id,
            Item::Image(i) => &i.id,
            Item::BuildCache { .. } => "",
        }
    }
}

/// What references images right now: listed again right before each eviction (services,
/// current and previous specs, and containers in every state), so a service created or a
/// container started since the plan was made keeps its image ([`Item::remove_fresh`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FreshRefs {
    /// (service name, image reference) of every service's spec and previous spec.
    pub services: Vec<(String, String)>,
    /// (image id, container name) of every container.
    pub containers: Vec<(String, String)>,
}

impl FreshRefs {
    /// Who references the image `id` that carries `tags` and `digests` (as inspected right
    /// before its delete), if anyone: a container using it, or a service whose reference names
    /// it by digest (`repo@sha256:…`, `repo:tag@sha256:…`; the digest is compared, so a
    /// familiar and a fully qualified spelling match) or by tag.
    pub fn referencing(&self, id: &str, tags: &[String], digests: &[String]) -> Option<String> {
        if let Some((_, name)) = self.containers.iter().find(|(i, _)| i == id) {
            return Some(format!("container {name}"));
        }
        let digest = |r: &str| r.split_once('@').map(|(_, d)| d.to_string());
        let own: Vec<String> = digests
            .iter()
            .chain(tags.iter())
            .filter_map(|r| digest(r))
            .collect();
        self.services.iter().find_map(|(name, r)| {
            let hit = match digest(r) {
                Some(d) => own.contains(&d),
                None => tags.iter().any(|t| t == r),
            };
            hit.then(|| format!("service {name} ({r})"))
        })
    }
}

/// Why an image of the plan was kept when its turn came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// 409 from the daemon: in use now (a container) or it has dependent images.
    InUse(String),
    /// Re-inspected right before its delete, it carries references it did not carry when it
    /// was listed (tagged or pulled since): never deleted, since a delete by id would untag it.
    Referenced(Vec<String>),
    /// The eviction tier's re-check: a service or container created since the plan was made
    /// references it ([`FreshRefs`]).
    ReferencedNow(String),
}

/// What removing one item did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// Removed. `ids`: what `removed` lists for it (an image: itself, then the untagged parent
    /// images the daemon deleted with it; build cache: the records the daemon pruned);
    /// `bytes`: reclaimed (images: the daemon's `Size`, which counts the parents' layers too;
    /// container sizes are not counted); `untagged`: references the daemon removed that the
    /// image did not carry when it was checked — an incident (it was tagged in between).
    Removed {
        ids: Vec<String>,
        bytes: u64,
        untagged: Vec<String>,
    },
    /// Already deleted with an image it was an untagged parent of (listed there): no request.
    WentWithChild,
    /// Kept, never forced.
    Kept(Kept),
    /// 404: already gone.
    Gone,
    /// The daemon refused or failed; the run goes on with the next item.
    Failed(String),
}

impl Done {
    /// The ids to list under `removed`, and the bytes reclaimed.
    pub fn removed(&self) -> (&[String], u64) {
        match self {
            Done::Removed { ids, bytes, .. } => (ids, *bytes),
            Done::WentWithChild | Done::Kept(_) | Done::Gone | Done::Failed(_) => (&[], 0),
        }
    }
}

/// At most this many parents are followed up an image's chain.
const MAX_PARENTS: usize = 256;

/// The untagged ancestors of an image whose parent is `parent`, nearest first: the images the
/// daemon may delete with it (it stops at a parent that carries a reference). Used to tell
/// parent images from released layers among the ids a delete reports.
async fn untagged_ancestors(client: &DockerClient, mut parent: String) -> Vec<String> {
    let mut out = Vec::new();
    while !parent.is_empty() && out.len() < MAX_PARENTS {
        let Ok(Some(p)) = client.inspect_image(&parent).await else {
            break;
        };
        if !is_untagged(&p.repo_tags) || !has_no_digest(&p.repo_digests) {
            break;
        }
        out.push(std::mem::replace(&mut parent, p.parent));
    }
    out
}

/// References an image may carry now and still be deleted as planned: none for a build
/// leftover; for a superseded cached pull, the repo digests it carries (the delete by id
/// removes those, as planned).
fn unexpected_refs(reason: &ImageReason, tags: &[String], digests: &[String]) -> Vec<String> {
    let mut refs: Vec<String> = tags
        .iter()
        .filter(|t| !is_untagged(std::slice::from_ref(t)))
        .cloned()
        .collect();
    if *reason == ImageReason::BuildLeftover {
        refs.extend(
            digests
                .iter()
                .filter(|d| !has_no_digest(std::slice::from_ref(d)))
                .cloned(),
        );
    }
    refs
}

impl Item<'_> {
    /// Remove it. `deleted`: every id the daemon reported deleted earlier in the run. An error
    /// is this item's failure ([`Done::Failed`]), never the run's.
    pub async fn remove(&self, client: &DockerClient, deleted: &HashSet<String>) -> Done {
        let r = match *self {
            Item::Container(c) => client
                .remove_container(&c.id)
                .await
                .map(|r| Done::of(r, vec![c.id.clone()], 0, &[])),
            Item::Image(i) if deleted.contains(&i.id) => Ok(Done::WentWithChild),
            Item::Image(i) => remove_image(client, i, None).await,
            Item::BuildCache { until, .. } => {
                client
                    .prune_build_cache(until)
                    .await
                    .map(|pruned| Done::Removed {
                        ids: pruned.ids,
                        bytes: pruned.bytes,
                        untagged: Vec::new(),
                    })
            }
        };
        r.unwrap_or_else(|e| Done::Failed(e.to_string()))
    }
}

impl Item<'_> {
    /// [`Item::remove`] for the eviction tier: an image is also checked against `fresh`, the
    /// references listed right before it ([`FreshRefs`]).
    pub async fn remove_fresh(
        &self,
        client: &DockerClient,
        deleted: &HashSet<String>,
        fresh: &FreshRefs,
    ) -> Done {
        match *self {
            Item::Image(i) if !deleted.contains(&i.id) => remove_image(client, i, Some(fresh))
                .await
                .unwrap_or_else(|e| Done::Failed(e.to_string())),
            _ => self.remove(client, deleted).await,
        }
    }
}

/// One image: re-inspected right before its delete, deleted only if it still is what the plan
/// chose (no tag; a build leftover: no repo digest either) and, for the eviction tier, nothing
/// in `fresh` references it. Containers are also the daemon's own check: a delete without
/// force of an image any container uses is a 409, checked by the daemon at the delete itself.
async fn remove_image(
    client: &DockerClient,
    i: &ImageCandidate,
    fresh: Option<&FreshRefs>,
) -> Result<Done, DockerError> {
    let Some(now) = client.inspect_image(&i.id).await? else {
        return Ok(Done::Gone);
    };
    let refs = unexpected_refs(&i.reason, &now.repo_tags, &now.repo_digests);
    if !refs.is_empty() {
        return Ok(Done::Kept(Kept::Referenced(refs)));
    }
    if let Some(who) = fresh.and_then(|f| f.referencing(&i.id, &now.repo_tags, &now.repo_digests)) {
        return Ok(Done::Kept(Kept::ReferencedNow(who)));
    }
    let ancestors = untagged_ancestors(client, now.parent).await;
    let removal = client.remove_image(&i.id).await?;
    let mut ids = vec![i.id.clone()];
    if let Removal::Removed { deleted, .. } = &removal {
        ids.extend(
            deleted
                .iter()
                .filter(|d| *d != &i.id && ancestors.contains(d))
                .cloned(),
        );
    }
    Ok(Done::of(
        removal,
        ids,
        i.size.max(0) as u64,
        &now.repo_digests,
    ))
}

impl Done {
    /// `ids`: what `removed` lists if it went; `expected`: references its delete may remove.
    fn of(removal: Removal, ids: Vec<String>, bytes: u64, expected: &[String]) -> Done {
        match removal {
            Removal::Removed { untagged, .. } => Done::Removed {
                ids,
                bytes,
                untagged: untagged
                    .into_iter()
                    .filter(|u| !expected.iter().any(|e| same_ref(e, u)))
                    .collect(),
            },
            Removal::Conflict(msg) => Done::Kept(Kept::InUse(msg)),
            Removal::Gone => Done::Gone,
        }
    }
}

/// The daemon reports an untagged reference in its familiar form (`redis@sha256:…` for
/// `docker.io/library/redis@sha256:…`); inspect lists `RepoDigests` in that form too, but compare
/// the digest part as well so a host-qualified spelling cannot make an expected digest look
/// like an incident.
fn same_ref(expected: &str, untagged: &str) -> bool {
    expected == untagged
        || matches!((expected.split_once('@'), untagged.split_once('@')),
            (Some((_, a)), Some((_, b))) if a == b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ImageReason;

    fn plan() -> Plan {
        Plan {
            containers: vec![ContainerCandidate {
                id: "c1".into(),
                name: "old-job".into(),
                state: "exited".into(),
                created: 0,
            }],
            images: vec![
                ImageCandidate {
                    id: "sha256:i1".into(),
                    size: 10,
                    created: 0,
                    reason: ImageReason::BuildLeftover,
                },
                ImageCandidate {
                    id: "sha256:i2".into(),
                    size: 20,
                    created: 0,
                    reason: ImageReason::BuildLeftover,
                },
            ],
            build_cache: Vec::new(),
            evict: Vec::new(),
        }
    }

    #[test]
    fn the_steps_are_the_plan_in_run_order() {
        let p = plan();
        let until = Duration::from_secs(60);
        let items: Vec<Item> = Step::ALL
            .into_iter()
            .flat_map(|s| s.items(&p, until))
            .collect();
        assert_eq!(
            items,
            [
                Item::Container(&p.containers[0]),
                Item::Image(&p.images[0]),
                Item::Image(&p.images[1]),
                Item::BuildCache {
                    until,
                    predicted: &[]
                },
            ]
        );
    }

    fn removed(deleted: &[&str], untagged: &[&str]) -> Removal {
        Removal::Removed {
            deleted: deleted.iter().map(|s| s.to_string()).collect(),
            untagged: untagged.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_removal_lists_its_ids_and_flags_references_it_did_not_expect() {
        let ids = vec!["sha256:i1".to_string(), "sha256:p".to_string()];
        let d = Done::of(
            removed(&["sha256:i1", "sha256:p", "sha256:layer"], &[]),
            ids.clone(),
            10,
            &[],
        );
        assert_eq!(d.removed(), (&ids[..], 10));
        // a build leftover that the daemon untagged on the way: an incident
        let d = Done::of(removed(&["sha256:i1"], &["app:1"]), ids.clone(), 10, &[]);
        assert!(matches!(&d, Done::Removed { untagged, .. } if untagged == &["app:1"]));
        // a superseded pull: its own digest is expected to go, a tag is not
        let digest = "127.0.0.1:5000/r@sha256:aa".to_string();
        let d = Done::of(
            removed(&["sha256:i1"], &["127.0.0.1:5000/r@sha256:aa", "r:2"]),
            ids,
            10,
            std::slice::from_ref(&digest),
        );
        assert!(matches!(&d, Done::Removed { untagged, .. } if untagged == &["r:2"]));
        assert_eq!(
            Done::of(Removal::Conflict("in use".into()), vec![], 10, &[]).removed(),
            (&[][..], 0)
        );
        assert_eq!(Done::WentWithChild.removed(), (&[][..], 0));
        assert_eq!(Done::Failed("boom".into()).removed(), (&[][..], 0));
    }

    /// Issue 17, item 5: the eviction queue's re-check, by hand-derived cases.
    #[test]
    fn fresh_references_by_digest_tag_or_container() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let fresh = FreshRefs {
            services: vec![
                ("pinned".into(), "127.0.0.1:5000/app@sha256:aa".into()),
                ("tagged".into(), "redis:7-alpine@sha256:bb".into()),
                ("bytag".into(), "web:2".into()),
            ],
            containers: vec![("sha256:used".into(), "job-1".into())],
        };
        // a digest reference, spelled as the image lists its repo digest
        assert_eq!(
            fresh.referencing("sha256:x", &[], &s(&["127.0.0.1:5000/app@sha256:aa"])),
            Some("service pinned (127.0.0.1:5000/app@sha256:aa)".into())
        );
        // `repo:tag@digest` against the familiar `redis@digest`
        assert_eq!(
            fresh.referencing("sha256:x", &[], &s(&["redis@sha256:bb"])),
            Some("service tagged (redis:7-alpine@sha256:bb)".into())
        );
        // the containerd store names a swarm pull by its digest-pinned reference
        assert!(fresh
            .referencing("sha256:x", &s(&["redis:7-alpine@sha256:bb"]), &[])
            .is_some());
        assert!(fresh.referencing("sha256:x", &s(&["web:2"]), &[]).is_some());
        assert_eq!(
            fresh.referencing("sha256:used", &[], &[]),
            Some("container job-1".into())
        );
        // another digest of the same repository is not referenced
        assert_eq!(
            fresh.referencing("sha256:x", &[], &s(&["127.0.0.1:5000/app@sha256:cc"])),
            None
        );
        assert_eq!(fresh.referencing("sha256:x", &s(&["web:1"]), &[]), None);
    }

    #[test]
    fn references_that_stop_an_image_delete() {
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let leftover = ImageReason::BuildLeftover;
        assert!(unexpected_refs(
            &leftover,
            &tags(&["<none>:<none>"]),
            &tags(&["<none>@<none>"])
        )
        .is_empty());
        assert_eq!(
            unexpected_refs(&leftover, &tags(&["app:1"]), &[]),
            ["app:1"]
        );
        assert_eq!(
            unexpected_refs(&leftover, &[], &tags(&["r@sha256:aa"])),
            ["r@sha256:aa"]
        );
        let pull = ImageReason::SupersededPull { repo: "r".into() };
        assert!(unexpected_refs(&pull, &[], &tags(&["r@sha256:aa"])).is_empty());
        assert_eq!(unexpected_refs(&pull, &tags(&["r:2"]), &[]), ["r:2"]);
        assert!(same_ref("docker.io/library/r@sha256:aa", "r@sha256:aa"));
        assert!(!same_ref("r@sha256:aa", "r:2"));
    }
}
