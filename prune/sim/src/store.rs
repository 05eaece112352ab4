//! The modelled daemon: an image store with shared layers and exact disk accounting, the
//! host's containers, services and build cache, and the daemon's event buffer. It answers with
//! the [`ci_docker_prune::docker`] types, so the prune's real selection code reads it as it reads a daemon.

use std::collections::{BTreeMap, HashMap, VecDeque};

use ci_docker_prune::docker::{
    BuildCacheRecord, ContainerInfo, ImageInfo, ServiceInfo, ServiceMode, TaskInfo,
};
use ci_docker_prune::gates::DiskUsage;
use ci_docker_prune::plan::Inventory;
use ci_docker_prune::usage::{UsageEvent, DAEMON_EVENT_BUFFER};

use super::trace::Trace;

/// Unix time of the trace's start (2026-01-01T00:00:00Z).
pub const EPOCH: i64 = 1_767_225_600;

/// An image in the store.
#[derive(Debug, Clone)]
pub struct StoredImage {
    pub version: usize,
    /// Still carries its tag (pulled by name, or the latest local build).
    pub tagged: bool,
}

#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub version: usize,
    pub running: bool,
    pub created: i64,
    pub rw_bytes: u64,
    pub run: Option<u32>,
    pub swarm: bool,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub id: String,
    pub name: String,
    pub version: usize,
    pub run: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct CacheRecord {
    pub id: String,
    pub size: u64,
    pub created: i64,
    pub last_used: i64,
}

/// Registry traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pulls {
    pub images: u64,
    pub layers: u64,
    pub bytes: u64,
}

/// Why an image left the store (for the report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Removal {
    Leftover,
    Superseded,
    Lru,
    Other,
}

/// The modelled host.
#[derive(Debug, Clone)]
pub struct Store<'t> {
    pub trace: &'t Trace,
    /// Present images, by version.
    pub images: BTreeMap<usize, StoredImage>,
    /// How many present images use each layer.
    layer_refs: Vec<u32>,
    pub containers: Vec<Container>,
    pub services: Vec<Service>,
    pub cache: Vec<CacheRecord>,
    volumes: HashMap<u32, u64>,
    /// Bytes in use (system + layers + containers' writable layers + build cache + volumes).
    pub used: u64,
    pub pulls: Pulls,
    /// The daemon's event buffer (the last [`DAEMON_EVENT_BUFFER`] events).
    pub events: VecDeque<UsageEvent>,
    /// Every image's last visible use (a container created from it, or a pull), trace seconds.
    pub last_use: HashMap<usize, i64>,
    pub removed: BTreeMap<Removal, u64>,
    /// Trace time of the event being applied (set by the simulation loop).
    pub now: i64,
    /// Every image removal: (trace time, version, why).
    pub removal_log: Vec<(i64, usize, Removal)>,
    /// Every pull: (trace time, version, layers, bytes).
    pub pull_log: Vec<(i64, usize, u64, u64)>,
    by_id: HashMap<String, usize>,
    next_id: u64,
}

impl<'t> Store<'t> {
    /// The host at the start of the trace: the initial images, the infra services running.
    pub fn new(trace: &'t Trace) -> Self {
        let by_id = trace
            .versions
            .iter()
            .enumerate()
            .map(|(i, v)| (v.id.clone(), i))
            .collect();
        let mut s = Store {
            trace,
            images: BTreeMap::new(),
            layer_refs: vec![0; trace.layers.len()],
            containers: Vec::new(),
            services: Vec::new(),
            cache: Vec::new(),
            volumes: HashMap::new(),
            used: trace.system_bytes,
            pulls: Pulls::default(),
            events: VecDeque::new(),
            last_use: HashMap::new(),
            removed: BTreeMap::new(),
            now: 0,
            removal_log: Vec::new(),
            pull_log: Vec::new(),
            by_id,
            next_id: 0,
        };
        for &v in &trace.initial {
            s.add_image(v, false);
            s.last_use.insert(v, -DAY_BEFORE);
        }
        for spec in &trace.infra {
            let id = s.fresh_id();
            s.services.push(Service {
                id,
                name: spec.name.clone(),
                version: spec.version,
                run: None,
            });
            s.start_container(spec.version, &spec.name, None, true, 0);
        }
        s
    }

    fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        format!("{:064x}", self.next_id)
    }

    pub fn disk_bytes(&self) -> u64 {
        self.trace.params.disk_bytes
    }

    /// Usage as `df` shows it, for the gates.
    pub fn disk_usage(&self) -> DiskUsage {
        DiskUsage {
            path: "/".into(),
            used: self.used,
            avail: self.disk_bytes().saturating_sub(self.used),
        }
    }

    pub fn percent(&self) -> u8 {
        self.disk_usage().percent()
    }

    /// Bytes pulling `v` needs (its layers not present).
    pub fn missing_bytes(&self, v: usize) -> (u64, u64) {
        let mut bytes = 0;
        let mut n = 0;
        let mut seen = Vec::new();
        for &l in &self.trace.versions[v].layers {
            if self.layer_refs[l] == 0 && !seen.contains(&l) {
                seen.push(l);
                bytes += self.trace.layers[l];
                n += 1;
            }
        }
        (n, bytes)
    }

    /// Bytes of layer `l` if it is not present.
    pub fn missing_layer(&self, l: usize) -> u64 {
        if self.layer_refs[l] == 0 {
            self.trace.layers[l]
        } else {
            0
        }
    }

    /// A run's service: created with one running task container.
    pub fn add_service(&mut self, spec: &super::trace::ServiceSpec, run: u32, t: i64) {
        let id = self.fresh_id();
        self.services.push(Service {
            id,
            name: spec.name.clone(),
            version: spec.version,
            run: Some(run),
        });
        self.start_container(spec.version, &spec.name, Some(run), true, t);
        for _ in 0..self.trace.params.events_per_service / 2 {
            self.push_event(UsageEvent::Other { time: EPOCH + t });
        }
    }

    /// `docker service update --image`: the old task's container goes, a new one starts.
    pub fn update_service(&mut self, spec: &super::trace::ServiceSpec, run: u32, t: i64) {
        let Some(svc) = self
            .services
            .iter_mut()
            .find(|s| s.run == Some(run) && s.name == spec.name)
        else {
            return;
        };
        svc.version = spec.version;
        self.containers
            .retain(|c| !(c.run == Some(run) && c.name == spec.name));
        self.start_container(spec.version, &spec.name, Some(run), true, t);
        for _ in 0..self.trace.params.events_per_service / 2 {
            self.push_event(UsageEvent::Other { time: EPOCH + t });
        }
    }

    fn add_image(&mut self, v: usize, tagged: bool) {
        if self.images.contains_key(&v) {
            return;
        }
        let mut seen = Vec::new();
        for &l in &self.trace.versions[v].layers {
            if seen.contains(&l) {
                continue;
            }
            seen.push(l);
            if self.layer_refs[l] == 0 {
                self.used += self.trace.layers[l];
            }
            self.layer_refs[l] += 1;
        }
        self.images.insert(v, StoredImage { version: v, tagged });
    }

    /// Pull `v` if missing (counted), at trace time `t`. `tagged`: pulled by name.
    pub fn pull(&mut self, v: usize, t: i64, tagged: bool) {
        if let Some(img) = self.images.get_mut(&v) {
            img.tagged |= tagged;
            return;
        }
        let (n, bytes) = self.missing_bytes(v);
        self.pull_log.push((t, v, n, bytes));
        self.pulls.images += 1;
        self.pulls.layers += n;
        self.pulls.bytes += bytes;
        if tagged {
            // the tag moves to the new image: older images of the repo lose it
            let repo = self.trace.versions[v].repo;
            for img in self.images.values_mut() {
                if self.trace.versions[img.version].repo == repo {
                    img.tagged = false;
                }
            }
        }
        self.add_image(v, tagged);
        self.push_event(UsageEvent::Pull {
            time: EPOCH + t,
            reference: self.reference(v),
        });
        self.last_use.insert(v, t);
    }

    /// A local build: creates `v` tagged; the previous build of the repo loses its tag.
    pub fn build(&mut self, v: usize, t: i64, cache_bytes: u64) {
        let repo = self.trace.versions[v].repo;
        for img in self.images.values_mut() {
            if self.trace.versions[img.version].repo == repo {
                img.tagged = false;
            }
        }
        self.add_image(v, true);
        // first seen now (what docuum and kubelet record for a new image)
        self.last_use.insert(v, t);
        let id = self.fresh_id();
        self.cache.push(CacheRecord {
            id,
            size: cache_bytes,
            created: t,
            last_used: t,
        });
        self.used += cache_bytes;
        // the previous record of this build is reused (its last use moves)
        if let Some(prev) = self.cache.iter_mut().rev().nth(1) {
            prev.last_used = t;
        }
        for _ in 0..8 {
            self.push_event(UsageEvent::Other { time: EPOCH + t });
        }
    }

    /// An untagged image with no repo digest appears (a build leftover).
    pub fn leftover(&mut self, v: usize, t: i64) {
        self.add_image(v, false);
        self.last_use.insert(v, t);
    }

    /// The reference a swarm service or a pull event names `v` by.
    pub fn reference(&self, v: usize) -> String {
        let ver = &self.trace.versions[v];
        let repo = &self.trace.repos[ver.repo].name;
        match &ver.digest {
            Some(d) => format!("{repo}:{}@{d}", ver.tag),
            None => format!("{repo}:{}", ver.tag),
        }
    }

    pub fn push_event(&mut self, e: UsageEvent) {
        if self.events.len() == DAEMON_EVENT_BUFFER {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// The daemon's answer to `GET /events?since=since`: what it still has after `since`.
    pub fn events_since(&self, since: Option<i64>) -> Vec<UsageEvent> {
        self.events
            .iter()
            .filter(|e| since.is_none_or(|s| e.time() > s))
            .cloned()
            .collect()
    }

    pub fn start_container(&mut self, v: usize, name: &str, run: Option<u32>, swarm: bool, t: i64) {
        let id = self.fresh_id();
        self.containers.push(Container {
            id,
            name: name.to_string(),
            version: v,
            running: true,
            created: t,
            rw_bytes: 0,
            run,
            swarm,
        });
        self.push_event(UsageEvent::ContainerCreate {
            time: EPOCH + t,
            image: self.reference(v),
            swarm,
        });
        self.last_use.insert(v, t);
    }

    pub fn add_exited(&mut self, v: usize, name: &str, t: i64, rw: u64) {
        let id = self.fresh_id();
        self.containers.push(Container {
            id,
            name: name.to_string(),
            version: v,
            running: false,
            created: t,
            rw_bytes: rw,
            run: None,
            swarm: false,
        });
        self.used += rw;
        self.push_event(UsageEvent::ContainerCreate {
            time: EPOCH + t,
            image: self.reference(v),
            swarm: false,
        });
        self.last_use.insert(v, t);
    }

    pub fn add_volume(&mut self, run: u32, bytes: u64) {
        self.volumes.insert(run, bytes);
        self.used += bytes;
    }

    /// Remove a run's stack: its services, their containers, its volumes.
    pub fn teardown(&mut self, run: u32, t: i64) {
        let n = self.services.iter().filter(|s| s.run == Some(run)).count() as u32;
        self.services.retain(|s| s.run != Some(run));
        self.containers.retain(|c| c.run != Some(run));
        if let Some(b) = self.volumes.remove(&run) {
            self.used -= b;
        }
        for _ in 0..n * self.trace.params.events_per_service / 2 {
            self.push_event(UsageEvent::Other { time: EPOCH + t });
        }
    }

    /// Remove a container by id (no force: a running one is refused).
    pub fn remove_container(&mut self, id: &str) -> bool {
        let Some(i) = self
            .containers
            .iter()
            .position(|c| c.id == id && !c.running)
        else {
            return false;
        };
        let c = self.containers.remove(i);
        self.used -= c.rw_bytes;
        true
    }

    /// Remove an image by id, never forced: refused (false) while a container uses it.
    pub fn remove_image(&mut self, id: &str, why: Removal) -> bool {
        let Some(&v) = self.by_id.get(id) else {
            return false;
        };
        self.remove_version(v, why)
    }

    pub fn remove_version(&mut self, v: usize, why: Removal) -> bool {
        if !self.images.contains_key(&v) || self.containers.iter().any(|c| c.version == v) {
            return false;
        }
        self.images.remove(&v);
        let mut seen = Vec::new();
        for &l in &self.trace.versions[v].layers {
            if seen.contains(&l) {
                continue;
            }
            seen.push(l);
            self.layer_refs[l] -= 1;
            if self.layer_refs[l] == 0 {
                self.used -= self.trace.layers[l];
            }
        }
        *self.removed.entry(why).or_default() += 1;
        self.removal_log.push((self.now, v, why));
        true
    }

    /// Remove build cache records by id.
    pub fn remove_cache(&mut self, ids: &[String]) {
        let mut freed = 0;
        self.cache.retain(|r| {
            let go = ids.contains(&r.id);
            if go {
                freed += r.size;
            }
            !go
        });
        self.used -= freed;
    }

    /// The store as the daemon lists it, for the prune's real selection code.
    pub fn inventory(&self) -> Inventory {
        Inventory {
            services: self.service_infos(),
            containers: self.container_infos(),
            images: self.image_infos(),
            build_cache: self.cache_infos(),
        }
    }

    pub fn service_infos(&self) -> Vec<ServiceInfo> {
        self.services
            .iter()
            .map(|s| ServiceInfo {
                id: s.id.clone(),
                name: s.name.clone(),
                mode: ServiceMode::Replicated(1),
                update_state: None,
                image: Some(self.reference(s.version)),
                previous_image: None,
            })
            .collect()
    }

    /// One running task per service (the sim's deploys converge at once).
    pub fn running_tasks(&self) -> Vec<TaskInfo> {
        self.services
            .iter()
            .map(|s| TaskInfo {
                service_id: s.id.clone(),
                slot: 1,
                desired_state: "running".into(),
                state: "running".into(),
                ..TaskInfo::default()
            })
            .collect()
    }

    pub fn container_infos(&self) -> Vec<ContainerInfo> {
        self.containers
            .iter()
            .map(|c| ContainerInfo {
                id: c.id.clone(),
                name: c.name.clone(),
                state: if c.running { "running" } else { "exited" }.into(),
                image_id: self.trace.versions[c.version].id.clone(),
                created: EPOCH + c.created,
                service: c.swarm.then(|| c.name.clone()),
                // the sim's containers stop when they are created: its age rule is unchanged
                finished: (!c.running).then_some(EPOCH + c.created),
            })
            .collect()
    }

    pub fn image_infos(&self) -> Vec<ImageInfo> {
        self.images
            .values()
            .map(|img| {
                let v = &self.trace.versions[img.version];
                let repo = &self.trace.repos[v.repo];
                // a swarm pull leaves no tag; a pull by name or a build keeps one
                let tags = if img.tagged {
                    vec![format!("{}:{}", repo.name, v.tag)]
                } else {
                    Vec::new()
                };
                let digests = v
                    .digest
                    .iter()
                    .map(|d| format!("{}@{d}", repo.name))
                    .collect();
                ImageInfo {
                    id: v.id.clone(),
                    parent_id: String::new(),
                    repo_tags: tags,
                    repo_digests: digests,
                    created: EPOCH + v.created,
                    size: self.trace.image_bytes(img.version) as i64,
                }
            })
            .collect()
    }

    pub fn cache_infos(&self) -> Vec<BuildCacheRecord> {
        let rfc = |t: i64| chrono::DateTime::from_timestamp(EPOCH + t, 0).map(|d| d.to_rfc3339());
        self.cache
            .iter()
            .map(|r| BuildCacheRecord {
                id: r.id.clone(),
                kind: "regular".into(),
                in_use: false,
                shared: false,
                size: r.size as i64,
                created_at: rfc(r.created),
                last_used_at: rfc(r.last_used),
            })
            .collect()
    }

    /// Version of an image id.
    pub fn version_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }
}

/// Images present at the start count as last used a day before it.
const DAY_BEFORE: i64 = 86_400;
