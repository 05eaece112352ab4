//! The removal steps of a run, in order, and what each one removes: the plan's items, one
//! request per item, and what each removal did. A dry run shows these items, a real run
//! removes them ([`crate::actions`]); their log lines are worded in [`crate::report`].

use std::collections::HashSet;
use std::time::Duration;

use crate::docker::{DockerClient, DockerError, Removal};
use crate::plan::{BuildCacheCandidate, ContainerCandidate, ImageCandidate, Plan};

/// A removal step, in run order. Every gate is checked again right before each one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Containers,
    Images,
    BuildCache,
}

impl Step {
    /// Every step, in run order.
    pub const ALL: [Step; 3] = [Step::Containers, Step::Images, Step::BuildCache];

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
        }
    }
}

/// One removal: one request to the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// `DELETE /containers/{id}`, volumes kept, never forced.
    Container(&'a ContainerCandidate),
    /// `DELETE /images/{id}`, never forced.
    Image(&'a ImageCandidate),
    /// `POST /build/prune` with the single filter `until`: the daemon picks the records.
    /// `predicted` are the records the plan expects it to pick (listed in a dry run only).
    BuildCache {
        until: Duration,
        predicted: &'a [BuildCacheCandidate],
    },
}

/// What removing one item did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// Removed. `ids`: what `removed` lists for it (build cache: the records the daemon
    /// pruned); `bytes`: reclaimed (images: the daemon's `Size`; container sizes are not
    /// counted); `parents`: further ids the daemon deleted with it (an image's untagged parents).
    Removed {
        ids: Vec<String>,
        bytes: u64,
        parents: Vec<String>,
    },
    /// Already deleted with an image it was an untagged parent of: counted as removed, no
    /// request sent.
    WentWithChild { id: String, bytes: u64 },
    /// 409: in use now (or has dependents) — kept, never forced.
    Kept(String),
    /// 404: already gone.
    Gone,
}

impl Done {
    /// The ids to list under `removed`, and the bytes reclaimed.
    pub fn removed(&self) -> (&[String], u64) {
        match self {
            Done::Removed { ids, bytes, .. } => (ids, *bytes),
            Done::WentWithChild { id, bytes } => (std::slice::from_ref(id), *bytes),
            Done::Kept(_) | Done::Gone => (&[], 0),
        }
    }

    fn of(removal: Removal, id: &str, bytes: u64) -> Done {
        match removal {
            Removal::Removed(deleted) => Done::Removed {
                ids: vec![id.to_string()],
                bytes,
                parents: deleted.into_iter().filter(|d| d != id).collect(),
            },
            Removal::Conflict(msg) => Done::Kept(msg),
            Removal::Gone => Done::Gone,
        }
    }
}

impl Item<'_> {
    /// Remove it. `deleted`: every id the daemon reported deleted earlier in the run.
    pub async fn remove(
        &self,
        client: &DockerClient,
        deleted: &HashSet<String>,
    ) -> Result<Done, DockerError> {
        Ok(match *self {
            Item::Container(c) => Done::of(client.remove_container(&c.id).await?, &c.id, 0),
            Item::Image(i) if deleted.contains(&i.id) => Done::WentWithChild {
                id: i.id.clone(),
                bytes: i.size.max(0) as u64,
            },
            Item::Image(i) => Done::of(
                client.remove_image(&i.id).await?,
                &i.id,
                i.size.max(0) as u64,
            ),
            Item::BuildCache { until, .. } => {
                let pruned = client.prune_build_cache(until).await?;
                Done::Removed {
                    ids: pruned.ids,
                    bytes: pruned.bytes,
                    parents: Vec::new(),
                }
            }
        })
    }
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

    #[test]
    fn an_image_removal_counts_itself_and_remembers_its_parents() {
        let d = Done::of(
            Removal::Removed(vec!["sha256:i1".into(), "sha256:p".into()]),
            "sha256:i1",
            10,
        );
        assert_eq!(d.removed(), (&["sha256:i1".to_string()][..], 10));
        assert!(matches!(&d, Done::Removed { parents, .. } if parents == &["sha256:p"]));
        assert_eq!(
            Done::of(Removal::Conflict("in use".into()), "x", 10).removed(),
            (&[][..], 0)
        );
        let gone = Done::WentWithChild {
            id: "sha256:p".into(),
            bytes: 5,
        };
        assert_eq!(gone.removed(), (&["sha256:p".to_string()][..], 5));
    }
}
