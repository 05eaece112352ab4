//! When was an image last used? Docker does not record it, so the prune keeps a small state
//! file (`usage.json` under the unit's `StateDirectory`, see [`STATE_FILE`]) and feeds it at
//! every run from what it can see:
//!
//! - the daemon's events since the last run (`GET /events?since=<cursor>&until=<now>`): a
//!   container created from an image uses it (a swarm task container also marks its
//!   repository *deployed*), a pull uses the pulled image;
//! - the services listed (their image is in use and its repository deployed: scaled to zero
//!   included) and the containers listed (any state: their image is in use).
//!
//! **Unknown counts as recently used (fail safe).** An image seen for the first time gets
//! "used now". The daemon replays only its last [`DAEMON_EVENT_BUFFER`] events (Docker's
//! documented limit; a ring of every kind of event, in memory), so the events since the last
//! run may be incomplete: the ring overflowed (a healthcheck alone adds three events per
//! interval, and the ring also holds events newer than the run's `until`, so the count of what
//! a query returns does not tell), or dockerd restarted (its ring starts empty; a restart
//! without a reboot leaves the boot id as it was). The state therefore keeps an **anchor**:
//! the identity ([`EventMark`]: time in nanoseconds, type, action, actor) of the newest event
//! the last run read. The next run asks for the events from the anchor's second on; the ring
//! is contiguous, so when the anchor is among them nothing in between was lost, and when it is
//! not (overflow, restart) — or there is no anchor to look for, the boot id changed, or the
//! cursor is in the future — every image present counts as used at the end of the window
//! whose events were lost ([`Gap`], with its [`GapCause`]) — as recently as it could have
//! been. A lost or unreadable state file is the same: everything is first seen now. The
//! eviction tier ([`crate::evict`]) orders by this time, so what the prune does not know about
//! goes last, never first.
//!
//! **Clock jumps.** Times are the daemon's (its events carry them; the caller passes the
//! daemon's clock as `now`). A stamp more than [`CLOCK_SKEW`] seconds after `now` was written
//! while a clock ran ahead: it is clamped to `now` (counted in [`Observed::future_stamps`]),
//! so it ages from now on instead of sorting last, and keeping its repository "recent", until
//! the clock catches up years later. A cursor or anchor from the future is a lost window.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::answers::{ContainerInfo, ImageInfo, ServiceInfo};
pub use crate::answers::{EventMark, UsageEvent};

/// The file name of the state, inside the state directory.
pub const STATE_FILE: &str = "usage.json";
/// How many events the daemon keeps for `since` queries (Docker documents "only the last 256
/// log events are returned").
pub const DAEMON_EVENT_BUFFER: usize = 256;
/// Version of the state file format.
pub const STATE_VERSION: u32 = 1;
/// How far (seconds) a stamp may lie after the daemon's `now` before it counts as written by a
/// clock that ran ahead (clocks of the prune's host and the daemon's drift a little).
pub const CLOCK_SKEW: i64 = 60;

/// Errors reading or writing the state file. Reading errors are not fatal to a run: the caller
/// starts from an empty state (everything unknown, i.e. recently used) and says so.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read usage state {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("usage state {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot write usage state {path}: {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// Why the events since the last run cannot all be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapCause {
    /// No previous state (first run, a lost or unreadable state, unreadable events).
    NoState,
    /// The host rebooted since the last run (its boot id changed).
    Reboot,
    /// The newest event the last run read is no longer in the daemon's ring: the ring
    /// overflowed, or dockerd restarted.
    AnchorLost,
    /// The last run read no event (or an older state recorded none): nothing to check
    /// continuity against.
    NoAnchor,
    /// The daemon returned a full ring whose oldest event is after the cursor (events without
    /// identities: the simulator).
    FullBuffer,
    /// The cursor or the anchor is in the future of the daemon's clock (a clock jumped back).
    ClockBack,
}

impl GapCause {
    /// For the log line.
    pub fn describe(self) -> &'static str {
        match self {
            GapCause::NoState => "no usage state to continue from",
            GapCause::Reboot => "the host rebooted",
            GapCause::AnchorLost => {
                "the newest event the last run read is gone from the daemon's ring (it overflowed, or dockerd restarted)"
            }
            GapCause::NoAnchor => "the last run read no event to check continuity against",
            GapCause::FullBuffer => "the daemon returned a full ring of events after the cursor",
            GapCause::ClockBack => "the last run's cursor lies in the future of the daemon's clock",
        }
    }
}

/// A window whose events were lost: every image present counts as used at `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// The cursor of the previous run (None: no previous state).
    pub start: Option<i64>,
    pub end: i64,
    pub cause: GapCause,
}

/// What one observation found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// Events read (all kinds).
    pub events: usize,
    /// Images seen for the first time (counted as used now).
    pub first_seen: usize,
    /// Set when events were lost (see [`GapCause`]).
    pub gap: Option<Gap>,
    /// Stamps found in the future of `now` (beyond [`CLOCK_SKEW`]) and clamped to `now`.
    pub future_stamps: usize,
}

/// The state file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageState {
    pub version: u32,
    /// Events were read up to this time (unix seconds); `None`: never.
    pub cursor: Option<i64>,
    /// `/proc/sys/kernel/random/boot_id` at the last run: a reboot empties the daemon's event
    /// buffer, so a changed boot id is a gap.
    #[serde(default)]
    pub boot_id: Option<String>,
    /// Image id → last time it was used (or first seen, or the end of a gap).
    pub images: BTreeMap<String, i64>,
    /// Repository → last time one of its images was deployed as a swarm service.
    pub repos: BTreeMap<String, i64>,
    /// Image id → last time a use of it was *seen* (a pull or a container create in the
    /// daemon's events, a service or container listing it), never a fill-in for what is not
    /// known (first sight, a lost window). The eviction tier's age guard reads it: an image
    /// seen used within `until` is not evicted.
    #[serde(default)]
    pub observed: BTreeMap<String, i64>,
    /// The newest event the last run read (see the module's doc): the next run looks for it.
    #[serde(default)]
    pub anchor: Option<EventMark>,
    /// Image id → when the state first saw it in the store (an upper bound of when the daemon
    /// got it).
    #[serde(default)]
    pub first_seen: BTreeMap<String, i64>,
    /// Image id → the last time the daemon got it from a registry or deployed it: a pull in
    /// its events, a swarm task's container created from it, a service listing it.
    #[serde(default)]
    pub got: BTreeMap<String, i64>,
}

/// What the daemon showed at this run.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub now: i64,
    pub boot_id: Option<&'a str>,
    pub images: &'a [ImageInfo],
    pub services: &'a [ServiceInfo],
    pub containers: &'a [ContainerInfo],
    /// Every event since [`UsageState::events_since`] (all kinds, oldest first), as the daemon
    /// returned them.
    pub events: &'a [UsageEvent],
    /// The events' identities, one per event (same order): continuity is checked against the
    /// anchor. `None`: the source has none (the simulator); only a full ring tells a gap.
    pub marks: Option<&'a [EventMark]>,
}

impl UsageState {
    /// A fresh state: nothing known.
    pub fn new() -> Self {
        UsageState {
            version: STATE_VERSION,
            ..Default::default()
        }
    }

    /// Read `path`; a missing file is a fresh state.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::new()),
            Err(cause) => {
                return Err(StateError::Read {
                    path: path.to_path_buf(),
                    cause,
                })
            }
        };
        let s: UsageState = serde_json::from_str(&text).map_err(|e| StateError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if s.version != STATE_VERSION {
            return Err(StateError::Parse {
                path: path.to_path_buf(),
                message: format!("version {} (expected {STATE_VERSION})", s.version),
            });
        }
        Ok(s)
    }

    /// Write `path` atomically and durably ([`crate::statefile::write_atomic`]).
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let write = |cause| StateError::Write {
            path: path.to_path_buf(),
            cause,
        };
        let text = serde_json::to_string(self)
            .map_err(|e| write(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        let (dir, name) = match (path.parent(), path.file_name()) {
            (Some(d), Some(n)) => (d, n.to_string_lossy()),
            _ => return Err(write(std::io::Error::other("not a file path"))),
        };
        crate::statefile::write_atomic(dir, &name, text.as_bytes()).map_err(write)
    }

    /// When `id` was last used, if known.
    pub fn last_used(&self, id: &str) -> Option<i64> {
        self.images.get(id).copied()
    }

    /// The `since` of the next events query (unix seconds): the cursor, or the anchor's second
    /// when earlier (the anchor must be among the answer), never after `now`.
    pub fn events_since(&self, now: i64) -> Option<i64> {
        let anchor = self.anchor.as_ref().map(EventMark::secs);
        let since = match (self.cursor, anchor) {
            (Some(c), Some(a)) => Some(c.min(a)),
            (c, a) => c.or(a),
        };
        since.map(|s| s.min(now))
    }

    /// When a use of `id` was last seen (not assumed), if ever.
    pub fn last_observed(&self, id: &str) -> Option<i64> {
        self.observed.get(id).copied()
    }

    /// When the daemon last got `id`: its last pull or swarm deploy seen (events, service
    /// listings), else when the state first saw it (an upper bound). Not the image's `Created`:
    /// a build date says nothing of when it reached this store (Nix `dockerTools` images are
    /// all dated 1970).
    pub fn got(&self, id: &str) -> Option<i64> {
        self.got
            .get(id)
            .or_else(|| self.first_seen.get(id))
            .copied()
    }

    /// When `id` was last seen pulled or deployed by a swarm service, if ever.
    pub fn last_got(&self, id: &str) -> Option<i64> {
        self.got.get(id).copied()
    }

    /// When `repo` (normalised, see [`normalize_repo`]) was last deployed, if known.
    pub fn last_deployed(&self, repo: &str) -> Option<i64> {
        self.repos.get(repo).copied()
    }

    /// Feed the state with what the daemon showed. Order: images first seen, lost windows,
    /// events, then what is in use now; images no longer present are forgotten.
    pub fn observe(&mut self, o: &Observation) -> Observed {
        let mut out = Observed {
            events: o.events.len(),
            ..Default::default()
        };
        let refs = RefIndex::new(o.images);
        // Clock: a stamp from the future of the daemon's clock was written while a clock ran
        // ahead; clamped to now, it ages from now on.
        let limit = o.now.saturating_add(CLOCK_SKEW);
        for map in [
            &mut self.images,
            &mut self.repos,
            &mut self.observed,
            &mut self.first_seen,
            &mut self.got,
        ] {
            for t in map.values_mut().filter(|t| **t > limit) {
                *t = o.now;
                out.future_stamps += 1;
            }
        }
        let oldest = o.events.first().map(UsageEvent::time);
        let rebooted = match (&self.boot_id, o.boot_id) {
            (Some(a), Some(b)) => a != b,
            _ => false,
        };
        let cause = match self.cursor {
            None => Some(GapCause::NoState),
            Some(_) if rebooted => Some(GapCause::Reboot),
            Some(c) if c > limit || self.anchor.as_ref().is_some_and(|a| a.secs() > limit) => {
                Some(GapCause::ClockBack)
            }
            Some(c) => match o.marks {
                Some(marks) => match &self.anchor {
                    None => Some(GapCause::NoAnchor),
                    Some(a) if !marks.contains(a) => Some(GapCause::AnchorLost),
                    Some(_) => None,
                },
                None => (o.events.len() >= DAEMON_EVENT_BUFFER && oldest.is_some_and(|t| t > c))
                    .then_some(GapCause::FullBuffer),
            },
        };
        if cause.is_some() {
            // the window before the cursor cannot be trusted to carry on from
            self.anchor = None;
        }
        if let Some(m) = o.marks.and_then(|m| m.last()) {
            self.anchor = Some(m.clone());
        }
        // When the store got it, at the latest: now, or for an image a state of the previous
        // version knew, its last use.
        for img in o.images {
            if !self.first_seen.contains_key(&img.id) {
                let t = self.images.get(&img.id).map_or(o.now, |t| (*t).min(o.now));
                self.first_seen.insert(img.id.clone(), t);
            }
        }
        // First sight: unknown counts as recently used.
        for img in o.images {
            if !self.images.contains_key(&img.id) {
                self.images.insert(img.id.clone(), o.now);
                out.first_seen += 1;
            }
        }
        if let Some(cause) = cause {
            // No previous state, a clock that jumped back: nothing is known, everything counts
            // as used now. Otherwise the window before the oldest event the daemon still has
            // (or before now) was lost.
            let end = match cause {
                GapCause::NoState | GapCause::ClockBack => o.now,
                _ => oldest.unwrap_or(o.now).min(o.now),
            };
            // Unknown counts as recently used: every image present may have been used, and its
            // repositories deployed, up to the end of the lost window.
            for img in o.images {
                bump(&mut self.images, &img.id, end);
                for repo in repos_of_image(img) {
                    bump(&mut self.repos, &repo, end);
                }
            }
            out.gap = Some(Gap {
                start: self.cursor,
                end,
                cause,
            });
        }
        for e in o.events {
            // an event's time past the daemon's own clock: clamped like a stored stamp
            let time = &e.time().min(o.now);
            match e {
                UsageEvent::ContainerCreate { image, swarm, .. } => {
                    if let Some(id) = refs.resolve(image) {
                        bump(&mut self.images, id, *time);
                        bump(&mut self.observed, id, *time);
                        if *swarm {
                            bump(&mut self.got, id, *time);
                        }
                    }
                    if *swarm {
                        if let Some(repo) = repo_of_reference(image) {
                            bump(&mut self.repos, &repo, *time);
                        }
                    }
                }
                UsageEvent::Pull { reference, .. } => {
                    if let Some(id) = refs.resolve(reference) {
                        bump(&mut self.images, id, *time);
                        bump(&mut self.observed, id, *time);
                        bump(&mut self.got, id, *time);
                    }
                }
                UsageEvent::Other { .. } => {}
            }
        }
        for c in o.containers {
            if self.images.contains_key(&c.image_id) {
                bump(&mut self.images, &c.image_id, o.now);
                bump(&mut self.observed, &c.image_id, o.now);
            }
        }
        for s in o.services {
            let Some(image) = s.image.as_deref() else {
                continue;
            };
            if let Some(id) = refs.resolve(image) {
                bump(&mut self.images, id, o.now);
                bump(&mut self.observed, id, o.now);
                bump(&mut self.got, id, o.now);
            }
            if let Some(repo) = repo_of_reference(image) {
                bump(&mut self.repos, &repo, o.now);
            }
        }
        let present: std::collections::HashSet<&str> =
            o.images.iter().map(|i| i.id.as_str()).collect();
        self.images.retain(|id, _| present.contains(id.as_str()));
        self.observed.retain(|id, _| present.contains(id.as_str()));
        self.first_seen
            .retain(|id, _| present.contains(id.as_str()));
        self.got.retain(|id, _| present.contains(id.as_str()));
        self.cursor = Some(o.now);
        if let Some(b) = o.boot_id {
            self.boot_id = Some(b.to_string());
        }
        out
    }

    /// Forget repositories not deployed since `before` (keeps the file small).
    pub fn forget_repos_before(&mut self, before: i64) {
        self.repos.retain(|_, t| *t >= before);
    }
}

fn bump(map: &mut BTreeMap<String, i64>, key: &str, t: i64) {
    match map.get_mut(key) {
        Some(v) => *v = (*v).max(t),
        None => {
            map.insert(key.to_string(), t);
        }
    }
}

/// `docker.io/library/redis` → `redis`, `docker.io/foo/bar` → `foo/bar`: the familiar name the
/// daemon lists in `RepoTags`/`RepoDigests`.
pub fn normalize_repo(repo: &str) -> String {
    let r = repo
        .strip_prefix("docker.io/")
        .or_else(|| repo.strip_prefix("index.docker.io/"))
        .unwrap_or(repo);
    r.strip_prefix("library/").unwrap_or(r).to_string()
}

/// The repository of a reference (`repo`, `repo:tag`, `repo@sha256:…`, `repo:tag@sha256:…`),
/// normalised; `None` for a bare image id.
pub fn repo_of_reference(reference: &str) -> Option<String> {
    if reference.starts_with("sha256:") {
        return None;
    }
    let name = reference.split('@').next().unwrap_or(reference);
    Some(normalize_repo(crate::answers::repo_of_tag(name)))
}

/// The repositories an image belongs to (from its tags and repo digests), normalised.
pub fn repos_of_image(img: &ImageInfo) -> Vec<String> {
    let mut out: Vec<String> = img
        .repo_tags
        .iter()
        .filter(|t| !t.is_empty() && *t != "<none>:<none>")
        // a digest-pinned name (`repo@sha256:…`, `repo:tag@sha256:…`: the containerd store's
        // RepoTag of a pull by digest) names the repository before the `@`
        .map(|t| {
            normalize_repo(crate::answers::repo_of_tag(crate::answers::repo_of_digest(
                t,
            )))
        })
        .chain(
            img.repo_digests
                .iter()
                .filter(|d| !d.is_empty() && *d != "<none>@<none>")
                .map(|d| normalize_repo(crate::answers::repo_of_digest(d))),
        )
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Resolves references to the ids of the images present.
pub struct RefIndex<'a> {
    by: HashMap<String, &'a str>,
}

impl<'a> RefIndex<'a> {
    pub fn new(images: &'a [ImageInfo]) -> Self {
        let mut by = HashMap::new();
        for img in images {
            by.insert(img.id.clone(), img.id.as_str());
            for t in &img.repo_tags {
                if let Some((repo, tag)) = split_tag(t) {
                    by.insert(format!("{}:{tag}", normalize_repo(repo)), img.id.as_str());
                }
            }
            for d in &img.repo_digests {
                if let Some((repo, digest)) = d.split_once('@') {
                    by.insert(
                        format!("{}@{digest}", normalize_repo(repo)),
                        img.id.as_str(),
                    );
                }
            }
        }
        RefIndex { by }
    }

    /// The id of the image `reference` names, if present. A digest wins over a tag.
    pub fn resolve(&self, reference: &str) -> Option<&'a str> {
        if let Some(id) = self.by.get(reference) {
            return Some(id);
        }
        match reference.split_once('@') {
            Some((name, digest)) => {
                let repo = normalize_repo(crate::answers::repo_of_tag(name));
                self.by.get(&format!("{repo}@{digest}")).copied()
            }
            None => {
                let (repo, tag) = split_tag(reference).unwrap_or((reference, "latest"));
                self.by
                    .get(&format!("{}:{tag}", normalize_repo(repo)))
                    .copied()
            }
        }
    }
}

fn split_tag(t: &str) -> Option<(&str, &str)> {
    let repo = crate::answers::repo_of_tag(t);
    t.get(repo.len() + 1..).map(|tag| (repo, tag))
}

/// The state file under `dir`.
pub fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::ServiceMode;

    /// The containerd store names a pull by digest `repo@sha256:…` in `RepoTags`: its
    /// repository is `repo`, not `repo@sha256` (measured on Docker 28.5 with the containerd
    /// store; the bogus name made every such pull the "newest of a recently deployed
    /// repository" of its own, so the tier never queued it).
    #[test]
    fn a_digest_pinned_name_belongs_to_its_repository() {
        let i = ImageInfo {
            id: "sha256:x".into(),
            parent_id: String::new(),
            repo_tags: vec![
                "127.0.0.1:5000/t/app@sha256:aa".into(),
                "127.0.0.1:5000/t/app:1@sha256:aa".into(),
            ],
            repo_digests: vec!["127.0.0.1:5000/t/app@sha256:aa".into()],
            created: 0,
            size: 1,
        };
        assert_eq!(repos_of_image(&i), ["127.0.0.1:5000/t/app"]);
    }

    fn img(id: &str, tags: &[&str], digests: &[&str]) -> ImageInfo {
        ImageInfo {
            id: id.into(),
            parent_id: String::new(),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: digests.iter().map(|s| s.to_string()).collect(),
            created: 0,
            size: 1,
        }
    }

    fn obs<'a>(
        now: i64,
        images: &'a [ImageInfo],
        services: &'a [ServiceInfo],
        events: &'a [UsageEvent],
    ) -> Observation<'a> {
        Observation {
            now,
            boot_id: Some("b1"),
            images,
            services,
            containers: &[],
            events,
            marks: None,
        }
    }

    #[test]
    fn references_resolve_to_ids() {
        let images = [
            img("sha256:r", &[], &["redis@sha256:aa"]),
            img("sha256:n", &["nginx:1.27"], &["nginx@sha256:bb"]),
        ];
        let ix = RefIndex::new(&images);
        assert_eq!(ix.resolve("redis:7-alpine@sha256:aa"), Some("sha256:r"));
        assert_eq!(
            ix.resolve("docker.io/library/redis@sha256:aa"),
            Some("sha256:r")
        );
        assert_eq!(ix.resolve("nginx:1.27"), Some("sha256:n"));
        assert_eq!(ix.resolve("sha256:n"), Some("sha256:n"));
        assert_eq!(ix.resolve("redis@sha256:zz"), None);
        assert_eq!(
            repo_of_reference("127.0.0.1:5000/library/redis:7@sha256:aa").as_deref(),
            Some("127.0.0.1:5000/library/redis")
        );
        assert_eq!(
            repo_of_reference("docker.io/library/redis:7").as_deref(),
            Some("redis")
        );
    }

    #[test]
    fn unknown_is_recently_used_and_events_order_the_rest() {
        let images = [
            img("sha256:a", &[], &["a@sha256:1"]),
            img("sha256:b", &[], &["b@sha256:2"]),
        ];
        let mut s = UsageState::new();
        // no previous state: everything first seen now, and the window before is a gap
        let o = s.observe(&obs(1000, &images, &[], &[]));
        assert_eq!(o.first_seen, 2);
        assert_eq!(
            o.gap,
            Some(Gap {
                start: None,
                end: 1000,
                cause: GapCause::NoState,
            })
        );
        assert_eq!(s.last_used("sha256:a"), Some(1000));
        // next run: a was used by a swarm task at 1500; b not at all
        let ev = [
            UsageEvent::Other { time: 1400 },
            UsageEvent::ContainerCreate {
                time: 1500,
                image: "a:1@sha256:1".into(),
                swarm: true,
            },
        ];
        let o = s.observe(&obs(2000, &images, &[], &ev));
        assert_eq!(o.gap, None);
        assert_eq!(s.last_used("sha256:a"), Some(1500));
        assert_eq!(s.last_used("sha256:b"), Some(1000));
        assert_eq!(s.last_deployed("a"), Some(1500));
        assert_eq!(s.cursor, Some(2000));
    }

    #[test]
    fn a_full_buffer_after_the_cursor_is_a_gap() {
        let images = [img("sha256:a", &[], &["a@sha256:1"])];
        let mut s = UsageState::new();
        s.observe(&obs(1000, &images, &[], &[]));
        let ev: Vec<UsageEvent> = (0..DAEMON_EVENT_BUFFER as i64)
            .map(|i| UsageEvent::Other { time: 5000 + i })
            .collect();
        let o = s.observe(&obs(9000, &images, &[], &ev));
        assert_eq!(
            o.gap,
            Some(Gap {
                start: Some(1000),
                end: 5000,
                cause: GapCause::FullBuffer,
            })
        );
        assert_eq!(s.last_used("sha256:a"), Some(5000));
        // a full buffer that reaches back to the cursor lost nothing
        let ev: Vec<UsageEvent> = (0..DAEMON_EVENT_BUFFER as i64)
            .map(|i| UsageEvent::Other { time: 9000 + i })
            .collect();
        assert_eq!(s.observe(&obs(10_000, &images, &[], &ev)).gap, None);
    }

    #[test]
    fn a_reboot_is_a_gap() {
        let images = [img("sha256:a", &[], &["a@sha256:1"])];
        let mut s = UsageState::new();
        s.observe(&obs(1000, &images, &[], &[]));
        let mut o = obs(2000, &images, &[], &[]);
        o.boot_id = Some("b2");
        assert!(s.observe(&o).gap.is_some());
        assert_eq!(s.last_used("sha256:a"), Some(2000));
    }

    #[test]
    fn services_mark_images_used_and_repos_deployed_even_at_zero_replicas() {
        let images = [img("sha256:a", &[], &["a@sha256:1"])];
        let svc = ServiceInfo {
            id: "s".into(),
            name: "web".into(),
            mode: ServiceMode::Replicated(0),
            update_state: None,
            image: Some("docker.io/library/a:1@sha256:1".into()),
            previous_image: None,
        };
        let mut s = UsageState::new();
        s.observe(&obs(1000, &images, &[], &[]));
        s.observe(&obs(3000, &images, std::slice::from_ref(&svc), &[]));
        assert_eq!(s.last_used("sha256:a"), Some(3000));
        assert_eq!(s.last_deployed("a"), Some(3000));
        // gone images are forgotten
        s.observe(&obs(4000, &[], &[], &[]));
        assert!(s.images.is_empty());
    }

    fn mark(time: i64, what: &str) -> EventMark {
        EventMark {
            time_nano: time * 1_000_000_000 + 7,
            what: what.into(),
        }
    }

    /// Issue 17, item 4, by hand: a run that read events leaves the newest one as its anchor;
    /// the next run's answer holds it (nothing lost in between, however many events: a ring is
    /// contiguous) or not (the ring overflowed, or dockerd restarted: a gap whose end is the
    /// oldest event still there). A count below the ring's size does not matter either way.
    #[test]
    fn continuity_is_the_anchor_not_the_count() {
        let images = [
            img("sha256:a", &[], &["a@sha256:1"]),
            img("sha256:b", &[], &["b@sha256:2"]),
        ];
        let mut s = UsageState::new();
        let ev = [UsageEvent::Other { time: 990 }];
        let m = [mark(990, "container exec_start x")];
        let mut o = obs(1000, &images, &[], &ev);
        o.marks = Some(&m);
        assert_eq!(s.observe(&o).gap.map(|g| g.cause), Some(GapCause::NoState));
        assert_eq!(s.anchor, Some(m[0].clone()));
        // the next query reaches back to the anchor's second
        assert_eq!(s.events_since(2000), Some(990));
        // the anchor is there, then a deploy of a: no gap, a dated by its event
        let ev = [
            UsageEvent::Other { time: 990 },
            UsageEvent::ContainerCreate {
                time: 1500,
                image: "a@sha256:1".into(),
                swarm: true,
            },
        ];
        let m = [m[0].clone(), mark(1500, "container create c")];
        let mut o = obs(2000, &images, &[], &ev);
        o.marks = Some(&m);
        assert_eq!(s.observe(&o).gap, None);
        assert_eq!(s.last_used("sha256:a"), Some(1500));
        assert_eq!(s.last_used("sha256:b"), Some(1000));
        assert_eq!(s.anchor, Some(m[1].clone()));
        // a restart (or an overflow): 3 events, none of them the anchor — a gap ending at the
        // oldest of them; b counts as used then
        let ev = [
            UsageEvent::Other { time: 2500 },
            UsageEvent::Other { time: 2600 },
            UsageEvent::Other { time: 2700 },
        ];
        let m = [
            mark(2500, "network connect n"),
            mark(2600, "container start c"),
            mark(2700, "container health_status c"),
        ];
        let mut o = obs(3000, &images, &[], &ev);
        o.marks = Some(&m);
        assert_eq!(
            s.observe(&o).gap,
            Some(Gap {
                start: Some(2000),
                end: 2500,
                cause: GapCause::AnchorLost,
            })
        );
        assert_eq!(s.last_used("sha256:b"), Some(2500));
        assert_eq!(s.anchor, Some(m[2].clone()));
        // an event with the anchor's second and what, another nanosecond: not the anchor
        let ev = [UsageEvent::Other { time: 2700 }];
        let other = EventMark {
            time_nano: m[2].time_nano + 1,
            what: m[2].what.clone(),
        };
        let mut o = obs(4000, &images, &[], &ev);
        let ms = [other];
        o.marks = Some(&ms);
        assert_eq!(
            s.observe(&o).gap.map(|g| g.cause),
            Some(GapCause::AnchorLost)
        );
        // a run that read nothing after a gap has no anchor: the next cannot check, a gap
        let mut o = obs(5000, &images, &[], &[]);
        o.marks = Some(&[]);
        assert_eq!(
            s.observe(&o).gap.map(|g| g.cause),
            Some(GapCause::AnchorLost)
        );
        assert_eq!(s.anchor, None);
        let mut o = obs(6000, &images, &[], &[]);
        o.marks = Some(&[]);
        assert_eq!(s.observe(&o).gap.map(|g| g.cause), Some(GapCause::NoAnchor));
    }

    /// A run that found its anchor and read nothing newer keeps the anchor (it is still the
    /// newest event read).
    #[test]
    fn an_anchor_with_nothing_newer_stays() {
        let images = [img("sha256:a", &[], &["a@sha256:1"])];
        let mut s = UsageState::new();
        let ev = [UsageEvent::Other { time: 900 }];
        let m = [mark(900, "image pull a")];
        let mut o = obs(1000, &images, &[], &ev);
        o.marks = Some(&m);
        s.observe(&o);
        let mut o = obs(2000, &images, &[], &ev);
        o.marks = Some(&m);
        assert_eq!(s.observe(&o).gap, None);
        assert_eq!(s.anchor, Some(m[0].clone()));
    }

    /// Issue 17, item 12, by hand: stamps written while a clock ran ahead are clamped to the
    /// daemon's now (beyond a minute of skew; within it they stay); a cursor from the future is
    /// a lost window ending now.
    #[test]
    fn stamps_from_the_future_are_clamped_and_a_future_cursor_is_a_gap() {
        let images = [
            img("sha256:a", &[], &["a@sha256:1"]),
            img("sha256:b", &[], &["b@sha256:2"]),
        ];
        const Y2030: i64 = 1_893_456_000;
        let mut s = UsageState::new();
        s.observe(&obs(1000, &images, &[], &[]));
        s.images.insert("sha256:a".into(), Y2030);
        s.observed.insert("sha256:a".into(), Y2030);
        s.repos.insert("a".into(), Y2030);
        // within the skew: kept as is
        s.images.insert("sha256:b".into(), 2000 + CLOCK_SKEW);
        let o = s.observe(&obs(2000, &images, &[], &[]));
        assert_eq!(o.future_stamps, 3);
        assert_eq!(o.gap, None);
        assert_eq!(s.last_used("sha256:a"), Some(2000));
        assert_eq!(s.last_observed("sha256:a"), Some(2000));
        assert_eq!(s.last_deployed("a"), Some(2000));
        assert_eq!(s.last_used("sha256:b"), Some(2000 + CLOCK_SKEW));
        // the state's cursor written in 2030, read back now: a gap ending now
        s.cursor = Some(Y2030);
        let o = s.observe(&obs(3000, &images, &[], &[]));
        assert_eq!(
            o.gap,
            Some(Gap {
                start: Some(Y2030),
                end: 3000,
                cause: GapCause::ClockBack,
            })
        );
        assert_eq!(s.cursor, Some(3000));
        // an anchor from the future: the query is not asked from the future either
        s.anchor = Some(mark(Y2030, "x"));
        assert_eq!(s.events_since(4000), Some(3000));
        let mut o = obs(4000, &images, &[], &[]);
        o.marks = Some(&[]);
        assert_eq!(
            s.observe(&o).gap.map(|g| g.cause),
            Some(GapCause::ClockBack)
        );
    }

    /// A state written by the previous version (no anchor field) still loads.
    #[test]
    fn a_state_without_an_anchor_loads() {
        let dir = tempfile::tempdir().unwrap();
        let p = state_path(dir.path());
        std::fs::write(
            &p,
            r#"{"version":1,"cursor":5,"boot_id":"b","images":{"sha256:a":5},"repos":{},"observed":{}}"#,
        )
        .unwrap();
        let s = UsageState::load(&p).unwrap();
        assert_eq!((s.cursor, s.anchor), (Some(5), None));
    }

    #[test]
    fn the_file_round_trips_and_a_bad_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = state_path(dir.path());
        assert_eq!(UsageState::load(&p).unwrap(), UsageState::new());
        let mut s = UsageState::new();
        s.observe(&obs(
            1000,
            &[img("sha256:a", &[], &["a@sha256:1"])],
            &[],
            &[],
        ));
        s.save(&p).unwrap();
        assert_eq!(UsageState::load(&p).unwrap(), s);
        std::fs::write(&p, "{not json").unwrap();
        assert!(matches!(
            UsageState::load(&p),
            Err(StateError::Parse { .. })
        ));
    }
}
