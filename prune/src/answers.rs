//! The daemon's answers as plain types: what the gates, the plan, the usage state and the
//! eviction tier read of services, tasks, containers, images, build cache and events, and the
//! reading of image references. The bottom of the crate: it depends on no other module, and
//! nothing here talks to the daemon ([`crate::docker`] fills these types in; the simulator and
//! the tests build them by hand). See docs/architecture.md, "Layers of the prune".

use serde::{Deserialize, Serialize};

/// A swarm service, as far as the gates and the plan need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub id: String,
    pub name: String,
    pub mode: ServiceMode,
    /// `UpdateStatus.State` (`updating`, `rollback_started`, `completed`, ...), if any.
    pub update_state: Option<String>,
    /// The image reference in the task template (often `repo:tag@sha256:...`).
    pub image: Option<String>,
    /// The image of `PreviousSpec`: what `docker service rollback` (or an automatic rollback
    /// of a failed update) deploys again. Referenced like `image`.
    pub previous_image: Option<String>,
}

impl ServiceInfo {
    /// Every image reference the service holds: its spec's and its previous spec's.
    pub fn images(&self) -> impl Iterator<Item = &str> {
        self.image
            .iter()
            .chain(&self.previous_image)
            .map(String::as_str)
    }
}

/// How many tasks a service wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceMode {
    Replicated(u64),
    Global,
    /// replicated-job / global-job: tasks run to completion, never "converging".
    Job,
}

/// What a node can tell about the swarm's services or tasks.
///
/// Only a node that is not part of a swarm has no services. A worker cannot list them (only a
/// manager can), and a manager without a leader or a locked swarm cannot answer: the gates
/// close on both (fail closed), never read them as "no services".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swarm<T> {
    /// A manager's answer.
    Listed(T),
    /// `Swarm.LocalNodeState` is `inactive`: not part of a swarm, so there is nothing to list.
    NoSwarm,
    /// A swarm worker (`LocalNodeState` `active`, `ControlAvailable` false).
    Worker,
    /// Any other error answer (no leader, locked, joining, ...): the daemon's message.
    Unavailable(String),
}

impl<T: Default> Swarm<T> {
    /// The listed value; empty for every other case.
    pub fn listed_or_default(self) -> T {
        match self {
            Swarm::Listed(t) => t,
            _ => T::default(),
        }
    }
}

/// A swarm task (any desired state: the swarm keeps a few ended tasks per slot as history).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskInfo {
    pub service_id: String,
    /// Replicated services: the slot (1..); global services: 0 (a task per node).
    pub slot: u64,
    pub node_id: String,
    /// What the orchestrator wants: `running`, `ready` (a restart waiting for its delay),
    /// `shutdown`, `remove`, ...
    pub desired_state: String,
    /// Observed state (`new`, `pending`, `assigned`, `accepted`, `preparing`, `starting`,
    /// `running`, `complete`, `failed`, `rejected`, `shutdown`, ...).
    pub state: String,
    /// `Status.Err`: why a task failed, was rejected or cannot be scheduled (`no suitable
    /// node (…)`), empty when none.
    pub err: String,
    /// `Version.Index`: raised by each update of the task (so, within a slot, the ended task
    /// with the highest index ended last).
    pub version: u64,
}

/// A container (any state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    /// `created`, `running`, `paused`, `restarting`, `removing`, `exited`, `dead`.
    pub state: String,
    pub image_id: String,
    /// Unix seconds.
    pub created: i64,
    /// Label `com.docker.swarm.service.name`: set on a swarm task's container.
    pub service: Option<String>,
    /// `State.FinishedAt` (unix seconds): when it last stopped. The list does not carry it:
    /// filled in by [`crate::docker::DockerClient::container_finished_at`] for the stopped containers old
    /// enough to matter; `None` when not read, or the container never ran.
    pub finished: Option<i64>,
}

/// A top-level image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub id: String,
    pub parent_id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// Unix seconds.
    pub created: i64,
    pub size: i64,
}

/// A build cache record, as `/system/df` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BuildCacheRecord {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Type", default)]
    pub kind: String,
    #[serde(rename = "InUse", default)]
    pub in_use: bool,
    #[serde(rename = "Shared", default)]
    pub shared: bool,
    #[serde(rename = "Size", default)]
    pub size: i64,
    #[serde(rename = "CreatedAt", default)]
    pub created_at: Option<String>,
    #[serde(rename = "LastUsedAt", default)]
    pub last_used_at: Option<String>,
}

/// An image as `GET /images/{id}/json` shows it right before its delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageState {
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// `Parent` (legacy builder images), empty when none.
    pub parent: String,
}

/// Result of a single removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Removed. `deleted`: every id the daemon reports deleted (for an image: the image, any
    /// untagged parent images that went with it and the ids of the layers it released);
    /// `untagged`: every reference the daemon reports it removed on the way (an image delete
    /// by id untags an image that has at most one tag, or digests of one repository).
    Removed {
        deleted: Vec<String>,
        untagged: Vec<String>,
    },
    /// 409: in use now (or has dependents) — skipped.
    Conflict(String),
    /// 404: already gone.
    Gone,
}

/// Result of the build cache prune.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildCachePruned {
    pub ids: Vec<String>,
    pub bytes: u64,
}

/// The identity of one daemon event: the ring replays an event with the same time (to the
/// nanosecond), type, action and actor, so the next run can tell whether it is still there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMark {
    /// `timeNano`.
    pub time_nano: i64,
    /// `"<type> <action> <actor id>"`.
    pub what: String,
}

impl EventMark {
    /// The event's second (what `since` is asked in).
    pub fn secs(&self) -> i64 {
        self.time_nano.div_euclid(1_000_000_000)
    }
}

/// One daemon event, reduced to what usage needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageEvent {
    /// A container was created from `image` (a reference as the daemon reports it: an id,
    /// `repo:tag`, `repo@sha256:…` or `repo:tag@sha256:…`). `swarm`: it is a swarm task's
    /// container (its image's repository counts as deployed).
    ContainerCreate {
        time: i64,
        image: String,
        swarm: bool,
    },
    /// An image was pulled (`reference` as the daemon reports it).
    Pull { time: i64, reference: String },
    /// Any other event: it only counts toward the daemon's buffer.
    Other { time: i64 },
}

impl UsageEvent {
    pub fn time(&self) -> i64 {
        match self {
            UsageEvent::ContainerCreate { time, .. }
            | UsageEvent::Pull { time, .. }
            | UsageEvent::Other { time } => *time,
        }
    }
}

/// Repository of `repo:tag` (a `:` after the last `/` separates the tag; a registry port doesn't).
pub fn repo_of_tag(tag: &str) -> &str {
    let slash = tag.rfind('/').map(|i| i + 1).unwrap_or(0);
    match tag[slash..].find(':') {
        Some(i) => &tag[..slash + i],
        None => tag,
    }
}

/// Repository of `repo@sha256:...`.
pub fn repo_of_digest(d: &str) -> &str {
    d.split('@').next().unwrap_or(d)
}
