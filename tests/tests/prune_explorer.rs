//! Issue 17: the state explorer on a real daemon. A seeded generator drives the sandbox's
//! dockerd through what CI hosts do (pulls by tag and by digest, swarm services replicated,
//! one-shot, scaled to zero, updated and rolled back, removed; containers running, stopped,
//! created, removed; tagged and untagged builds; tag moves), runs the real prune binary with
//! every step on (threshold 1 %, low watermark 0 %, no age guard, no keep-recent window) after
//! every few actions, and checks the prune's promises against a snapshot the test takes of the
//! daemon before each run, never against the prune's own account:
//!
//! - nothing a plain tag, a container that stays (any state) or a service spec (current or
//!   previous) references is removed; no volume is touched; no container that was running,
//!   paused or restarting is removed (and the recording proxy fails the run on any forbidden
//!   request: `all`, volumes, a delete by name or of a tagged image);
//! - the JSON is one object that validates against the schema, and the exit code is 1 exactly
//!   when the outcome is `error`;
//! - the run acted: a run that is not skipped by a gate removes every leftover nothing holds,
//!   and every cached pull nothing holds of a repository no service names (a named one counts
//!   as deployed now, so its newest image stays; so does every one at a state's first run)
//!   unless it said why the tier stopped.
//!
//! `CCCI_EXPLORER_SEEDS` (comma-separated) and `CCCI_EXPLORER_STEPS` widen the search; the
//! default (CI) is two seeds of 14 actions. `CCCI_EXPLORER_KEEP` keeps a seed's objects on the
//! daemon after it (to look at them); the next run of that seed sweeps them first, as it does
//! what a run stopped by a failing action left. `CCCI_EXPLORER_DEBUG` prints the daemon's raw
//! image list and the stderr of a dry run and of the run before each check. A failing seed prints its action log: keep it here
//! as a regression seed. The fast variant over generated inventories is
//! `prune/tests/plan_invariants.rs`.

mod prune_common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ccci_sandbox::images::{ImageSpec, Layer};
use prune_common::*;
use serde_json::Value;

const DEFAULT_SEEDS: [u64; 2] = [17, 4242];
const DEFAULT_STEPS: usize = 14;
/// A prune run after this many actions (and one at the end of every seed).
const RUN_EVERY: usize = 4;

/// xorshift64*: the same seed, the same sequence.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// What the explorer made, so the end of a seed removes all of it.
#[derive(Default)]
struct Made {
    repos: Vec<String>,
    /// digest references of pushed versions (`repo@sha256:…`)
    versions: Vec<String>,
    services: Vec<String>,
    /// the one-shot services (restart condition none): their task runs `true` and exits
    oneshots: Vec<String>,
    containers: Vec<String>,
    images: Vec<String>,
    volumes: Vec<String>,
    log: Vec<String>,
    n: usize,
}

/// busybox as `sh`, `sleep` and `true`: one layer every explorer image shares (as images
/// built on one base do).
fn base() -> Layer {
    let l = Layer::new()
        .host_file("/bin/busybox", std::path::Path::new("/bin/busybox"))
        .and_then(|l| l.symlink("/bin/sh", "busybox"))
        .and_then(|l| l.symlink("/bin/sleep", "busybox"))
        .and_then(|l| l.symlink("/bin/true", "busybox"));
    l.unwrap_or_else(|e| panic!("base layer (busybox-static): {e}"))
}

fn image(seed: &str, len: usize) -> ImageSpec {
    ImageSpec::new(vec![base(), noise_layer(seed, len)], "2024-01-01T00:00:00Z")
}

impl Made {
    fn name(&mut self, seed: u64, what: &str) -> String {
        self.n += 1;
        format!("ccci-x{seed}-{what}{}", self.n)
    }

    /// A new version of a repository, pushed; the local copy keeps its tag.
    fn push_version(&mut self, seed: u64, rng: &mut Rng) -> (String, String) {
        let repo = if self.repos.is_empty() || rng.below(3) == 0 {
            let r = format!("127.0.0.1:5000/ccci-explore/{}", self.name(seed, "r"));
            self.repos.push(r.clone());
            r
        } else {
            self.repos[rng.below(self.repos.len())].clone()
        };
        let tag = format!("{repo}:v{}", self.n);
        let s = self.name(seed, "l");
        let id = load(&image(&s, 2 << 20).tag(&tag));
        docker_ok(&["push", &tag]);
        let digest = docker_ok(&[
            "image",
            "inspect",
            "--format",
            "{{index .RepoDigests 0}}",
            &id,
        ]);
        self.versions.push(digest.clone());
        self.images.push(id);
        (tag, digest)
    }

    fn act(&mut self, seed: u64, rng: &mut Rng) {
        let pick = rng.below(12);
        let what = match pick {
            // a pull by digest (a swarm deploy's way), the tag gone: a cached pull
            0 | 1 => {
                let (tag, digest) = self.push_version(seed, rng);
                docker_ok(&["rmi", &tag]);
                docker_ok(&["pull", "-q", &digest]);
                format!("cached pull {digest}")
            }
            // a pull by tag, kept tagged
            2 => {
                let (tag, _) = self.push_version(seed, rng);
                docker_ok(&["rmi", &tag]);
                docker_ok(&["pull", "-q", &tag]);
                format!("pull by tag {tag}")
            }
            // a service pinned by digest: replicated 0 or 1, or a one-shot
            3 | 4 => {
                let digest = if self.versions.is_empty() || rng.below(2) == 0 {
                    self.push_version(seed, rng).1
                } else {
                    self.versions[rng.below(self.versions.len())].clone()
                };
                let name = self.name(seed, "svc");
                let mode = rng.below(3);
                let mut args = vec!["service", "create", "-d", "-q", "--name", &name];
                let replicas = match mode {
                    0 => {
                        args.extend(["--replicas", "0"]);
                        "0"
                    }
                    1 => {
                        args.extend(["--restart-condition", "none"]);
                        "1 one-shot"
                    }
                    _ => "1",
                };
                args.push(digest.as_str());
                if mode == 1 {
                    args.push("true");
                } else {
                    args.extend(["sleep", "300"]);
                }
                docker_ok(&args);
                if mode == 1 {
                    self.oneshots.push(name.clone());
                }
                self.services.push(name.clone());
                format!("service {name} ({replicas}) of {digest}")
            }
            // a service updated to another version (its previous spec keeps the old one)
            5 if !self.services.is_empty() => {
                let name = self.services[rng.below(self.services.len())].clone();
                let (_, digest) = self.push_version(seed, rng);
                docker_ok(&["service", "update", "-d", "-q", "--image", &digest, &name]);
                format!("service {name} updated to {digest}")
            }
            // a service scaled to zero, or removed
            6 if !self.services.is_empty() => {
                let i = rng.below(self.services.len());
                let name = self.services[i].clone();
                if rng.below(2) == 0 {
                    docker_ok(&["service", "scale", "-d", &format!("{name}=0")]);
                    format!("service {name} scaled to 0")
                } else {
                    remove_service(&name);
                    self.services.remove(i);
                    format!("service {name} removed")
                }
            }
            // a container from a version: running, exited, or created and never started
            7 | 8 if !self.versions.is_empty() => {
                let image = self.versions[rng.below(self.versions.len())].clone();
                let name = self.name(seed, "c");
                let how = rng.below(3);
                match how {
                    0 => docker_ok(&["run", "-d", "--name", &name, &image, "sleep", "300"]),
                    1 => docker_ok(&["run", "--name", &name, &image, "true"]),
                    _ => docker_ok(&["create", "--name", &name, &image, "true"]),
                };
                self.containers.push(name.clone());
                format!(
                    "container {name} ({}) of {image}",
                    ["running", "exited", "created"][how]
                )
            }
            // a container with a named volume, exited
            9 => {
                let s = self.name(seed, "b");
                let id = load(&image(&s, 1 << 16));
                let name = self.name(seed, "c");
                let vol = self.name(seed, "v");
                docker_ok(&[
                    "run",
                    "--name",
                    &name,
                    "-v",
                    &format!("{vol}:/data"),
                    &id,
                    "true",
                ]);
                self.containers.push(name.clone());
                self.volumes.push(vol.clone());
                self.images.push(id.clone());
                format!("container {name} with volume {vol} of the leftover {id}")
            }
            // a build: untagged (a leftover), or tagged, or a tag moved to a new build
            _ => {
                let s = self.name(seed, "b");
                let spec = image(&s, 1 << 18);
                let tag = format!("ccci-explore/{seed}-build:latest");
                match rng.below(3) {
                    0 => {
                        let id = load(&spec);
                        self.images.push(id.clone());
                        format!("untagged build {id}")
                    }
                    _ => {
                        let id = load(&spec.tag(&tag));
                        self.images.push(id.clone());
                        format!("build {id} tagged {tag} (the tag moves off any earlier build)")
                    }
                }
            }
        };
        self.log.push(what);
    }

    /// Wait until no one-shot's task is still running (it runs `true`): a snapshot must not
    /// catch it running a moment before the prune sees it exited. A settled one-shot is the
    /// converge gate's business; this is only the test's own timing.
    fn settle(&self) {
        for name in &self.oneshots {
            wait_for(Duration::from_secs(30), || {
                docker_ok(&[
                    "ps",
                    "-q",
                    "--filter",
                    &format!("label=com.docker.swarm.service.name={name}"),
                ])
                .is_empty()
            });
        }
    }

    fn clean(&mut self) {
        for s in self.services.drain(..) {
            remove_service(&s);
        }
        for c in self.containers.drain(..) {
            let _ = docker(&["rm", "-f", &c]);
        }
        for v in self.volumes.drain(..) {
            let _ = docker(&["volume", "rm", "-f", &v]);
        }
        for v in self.versions.drain(..) {
            let _ = docker(&["rmi", "-f", &v]);
        }
        for i in self.images.drain(..) {
            let _ = docker(&["rmi", "-f", &i]);
        }
        // every name the explorer gave, whatever image it is on now
        let names = docker_ok(&[
            "image",
            "ls",
            "--no-trunc",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}}",
        ]);
        for l in names.lines().filter(|l| l.contains("ccci-explore")) {
            if let Some(id) = l.split_whitespace().nth(1) {
                let _ = docker(&["rmi", "-f", id]);
            }
        }
    }
}

/// Remove what an earlier run of `seed` left on the daemon: one kept with
/// `CCCI_EXPLORER_KEEP`, or one an action's panic stopped before its own clean-up. Without
/// this the same seed collides with its own leftovers (`service ccci-x17-svc16 already
/// exists`) and explores a state it did not generate (the old services still pin versions,
/// old tags and pulls are in the store), which is not the seed's sequence any more.
fn sweep(seed: u64) {
    let prefix = format!("ccci-x{seed}-");
    let names = |args: &[&str]| -> Vec<String> {
        docker_ok(args)
            .lines()
            .map(str::trim)
            .filter(|n| n.starts_with(&prefix))
            .map(str::to_string)
            .collect()
    };
    for s in names(&["service", "ls", "--format", "{{.Name}}"]) {
        remove_service(&s);
    }
    for c in names(&["ps", "-a", "--format", "{{.Names}}"]) {
        let _ = docker(&["rm", "-f", &c]);
    }
    for v in names(&["volume", "ls", "--format", "{{.Name}}"]) {
        let _ = docker(&["volume", "rm", "-f", &v]);
    }
    let images = docker_ok(&[
        "image",
        "ls",
        "--no-trunc",
        "--format",
        "{{.Repository}} {{.ID}}",
    ]);
    let build = format!("ccci-explore/{seed}-build");
    for l in images.lines() {
        let mut f = l.split_whitespace();
        if let (Some(repo), Some(id)) = (f.next(), f.next()) {
            if repo == build || repo.contains(&format!("/ccci-explore/{prefix}")) {
                let _ = docker(&["rmi", "-f", id]);
            }
        }
    }
}

/// Cleans up when a seed ends, panics included (an action's `docker_ok` panics).
struct CleanOnDrop<'a>(&'a mut Made);

impl Drop for CleanOnDrop<'_> {
    fn drop(&mut self) {
        if std::env::var("CCCI_EXPLORER_KEEP").is_err() {
            self.0.clean();
        }
    }
}

/// What the daemon held before a run, read by the test.
#[derive(Debug, Default)]
struct Snapshot {
    /// id → (tags, digests)
    images: BTreeMap<String, (Vec<String>, Vec<String>)>,
    /// id → (state, image id, swarm service name or "")
    containers: BTreeMap<String, (String, String, String)>,
    /// service name → image references (current, previous)
    services: BTreeMap<String, Vec<String>>,
    volumes: BTreeSet<String>,
}

fn inspect_all(kind: &str, ids: &str) -> Vec<Value> {
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if ids.is_empty() {
        return Vec::new();
    }
    let mut args = vec![kind, "inspect"];
    args.extend(ids);
    // an object that went between the listing and the inspect is simply not in the snapshot
    let (_, out, _) = docker(&args);
    serde_json::from_str(&out).unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    for i in inspect_all("image", &docker_ok(&["image", "ls", "-aq", "--no-trunc"])) {
        let id = i["Id"].as_str().unwrap_or_default().to_string();
        s.images
            .insert(id, (strings(&i["RepoTags"]), strings(&i["RepoDigests"])));
    }
    for c in inspect_all("container", &docker_ok(&["ps", "-aq", "--no-trunc"])) {
        s.containers.insert(
            c["Id"].as_str().unwrap_or_default().to_string(),
            (
                c["State"]["Status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                c["Image"].as_str().unwrap_or_default().to_string(),
                c["Config"]["Labels"]["com.docker.swarm.service.name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ),
        );
    }
    for v in inspect_all("service", &docker_ok(&["service", "ls", "-q"])) {
        let refs = [&v["Spec"], &v["PreviousSpec"]]
            .iter()
            .filter_map(|sp| sp["TaskTemplate"]["ContainerSpec"]["Image"].as_str())
            .map(str::to_string)
            .collect();
        s.services.insert(
            v["Spec"]["Name"].as_str().unwrap_or_default().to_string(),
            refs,
        );
    }
    s.volumes = docker_ok(&["volume", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .collect();
    s
}

/// The repository of `repo:tag`, `repo@sha256:…` or `repo:tag@sha256:…`.
fn repo_of(reference: &str) -> &str {
    let name = reference.split('@').next().unwrap_or(reference);
    let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    match name[slash..].find(':') {
        Some(i) => &name[..slash + i],
        None => name,
    }
}

fn plain(tag: &str) -> bool {
    !tag.is_empty() && tag != "<none>:<none>" && !tag.contains('@')
}

/// The image ids a reference pins (by digest: a listed digest, or the id itself on the
/// containerd store), in `snap`.
fn pinned<'a>(snap: &'a Snapshot, reference: &str) -> Vec<&'a str> {
    let Some((_, d)) = reference.split_once('@') else {
        return Vec::new();
    };
    snap.images
        .iter()
        .filter(|(id, (tags, digests))| {
            id.as_str() == d
                || digests
                    .iter()
                    .chain(tags)
                    .any(|x| x.split_once('@').is_some_and(|(_, xd)| xd == d))
        })
        .map(|(id, _)| id.as_str())
        .collect()
}

/// One run, checked. Returns what it found wrong.
fn run_and_check(state_dir: &std::path::Path, first: bool, made: &Made) -> Vec<String> {
    let log = &made.log;
    // let services settle a little: an update or a new task is work in flight (the converge
    // gate's business); the check below accepts a run skipped by that gate
    std::thread::sleep(Duration::from_millis(500));
    let before = snapshot();
    let dry = if std::env::var("CCCI_EXPLORER_DEBUG").is_ok() {
        let raw = std::process::Command::new("curl")
            .args(["-s", "--unix-socket"])
            .arg(sb().socket_path())
            .arg("http://d/v1.41/images/json")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        eprintln!("RAW /images/json: {raw}");
        let dry = prune_with_state_dir(
            &[
                "--threshold",
                "1",
                "--evict-low-watermark",
                "0",
                "--until",
                "0s",
                "--evict-keep-recent",
                "0s",
                "--run-stack-pattern",
                NO_RUN_PATTERN,
                "--json",
                "--dry-run",
            ],
            state_dir,
        );
        eprintln!("DRY STDERR: {}", dry.stderr);
        dry.stdout
    } else {
        String::new()
    };
    let run = prune_with_state_dir(
        &[
            "--threshold",
            "1",
            "--evict-low-watermark",
            "0",
            "--until",
            "0s",
            "--evict-keep-recent",
            "0s",
            "--run-stack-pattern",
            NO_RUN_PATTERN,
            "--json",
        ],
        state_dir,
    );
    let j = run.json();
    if std::env::var("CCCI_EXPLORER_DEBUG").is_ok() {
        eprintln!("RUN STDERR: {}", run.stderr);
    }
    let after = snapshot();
    let mut bad = Vec::new();
    let outcome = j["outcome"].as_str().unwrap_or_default().to_string();
    if (run.code == 1) != (outcome == "error") || !(run.code == 0 || run.code == 1) {
        bad.push(format!("exit {} with outcome {outcome}", run.code));
    }
    // references held before the run, by what still holds them after it
    let mut held: BTreeMap<&str, String> = BTreeMap::new();
    for (id, (tags, _)) in &before.images {
        if let Some(t) = tags.iter().find(|t| plain(t)) {
            held.insert(id, format!("tagged {t}"));
        }
    }
    for (cid, (state, image, service)) in &before.containers {
        if after.containers.contains_key(cid) {
            held.insert(image, format!("container {} ({state}) stays", &cid[..12]));
        } else if ["running", "paused", "restarting"].contains(&state.as_str())
            // a one-shot's task runs `true`: seen running here, it may have exited before the
            // prune listed it (the daemon refuses to remove a running container without force,
            // and the proxy fails the run on a forced removal)
            && !made.oneshots.contains(service)
        {
            bad.push(format!("container {} was {state} and is gone", &cid[..12]));
        }
    }
    for (name, refs) in &before.services {
        for r in refs {
            for id in pinned(&before, r) {
                held.insert(id, format!("service {name} pins {r}"));
            }
        }
    }
    for (id, why) in &held {
        if before.images.contains_key(*id) && !after.images.contains_key(*id) {
            bad.push(format!(
                "image {} removed although {why}",
                &id[..19.min(id.len())]
            ));
        }
    }
    if before.volumes != after.volumes {
        bad.push(format!(
            "volumes changed: {:?} → {:?}",
            before.volumes, after.volumes
        ));
    }
    // a run whose removals brought the disk below the threshold stops there (the later steps
    // and the eviction tier idle): it pruned, and removed something
    let relieved = !j["below_threshold_after"].is_null();
    if relieved {
        let removed_any = ["containers", "images", "build_cache"]
            .iter()
            .any(|k| j["removed"][k].as_array().is_some_and(|a| !a.is_empty()));
        if outcome != "pruned" || !removed_any {
            bad.push(format!(
                "below_threshold_after with outcome {outcome} (removed anything: {removed_any})"
            ));
        }
    }
    // the run acted
    if relieved {
        // kept what the later steps would have taken: below the threshold, by design
    } else if outcome != "skipped" && outcome != "error" {
        let tier_stopped = run.stderr.contains("eviction stopped");
        // a repository a service names counts as deployed now: its newest image is kept
        // (keep-recent), whichever the tier takes for newest; only repositories no service
        // names must lose every cached pull nothing holds
        let deployed: BTreeSet<&str> = before
            .services
            .values()
            .flatten()
            .map(|r| repo_of(r))
            .collect();
        for (id, (tags, digests)) in &before.images {
            if held.contains_key(id.as_str()) || !after.images.contains_key(id) {
                continue;
            }
            let leftover = tags.iter().all(|t| !plain(t) && !t.contains('@'))
                && digests.iter().all(|d| d.is_empty() || d == "<none>@<none>");
            let of_deployed = digests
                .iter()
                .chain(tags)
                .any(|r| deployed.contains(repo_of(r)));
            // the first run of a state knows no history: every repository counts as deployed
            // now (unknown = recently used), so its newest image stays
            if leftover || (!tier_stopped && !of_deployed && !first) {
                bad.push(format!(
                    "{} {} ({tags:?} {digests:?}) held by nothing and kept",
                    if leftover { "leftover" } else { "cached pull" },
                    &id[..19.min(id.len())]
                ));
            }
        }
    } else if outcome == "skipped" && j["skipped_by"].as_str() != Some("converge") {
        bad.push(format!(
            "skipped by {} with the disk over 1 % and no run live",
            j["skipped_by"]
        ));
    }
    if !bad.is_empty() {
        bad.push(format!(
            "actions so far:\n  {}\ndry run: {dry}\nreport: {j}\nstderr: {}\nthe daemon before the run: {before:#?}",
            log.join("\n  "),
            run.stderr
        ));
    }
    bad
}

fn seeds() -> Vec<u64> {
    match std::env::var("CCCI_EXPLORER_SEEDS") {
        Ok(s) => s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => DEFAULT_SEEDS.to_vec(),
    }
}

#[test]
#[serial_test::file_serial(sandbox)]
fn the_prune_keeps_its_promises_on_explored_states() {
    let steps = std::env::var("CCCI_EXPLORER_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_STEPS);
    let mut runs = 0;
    let mut states = 0;
    for seed in seeds() {
        let state = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let mut rng = Rng::new(seed);
        sweep(seed);
        let mut made = Made::default();
        let guard = CleanOnDrop(&mut made);
        let made = &mut *guard.0;
        let mut bad = Vec::new();
        for step in 1..=steps {
            made.act(seed, &mut rng);
            states += 1;
            if step % RUN_EVERY == 0 || step == steps {
                made.settle();
                bad = run_and_check(state.path(), step <= RUN_EVERY, made);
                runs += 1;
                if !bad.is_empty() {
                    break;
                }
            }
        }
        assert!(bad.is_empty(), "seed {seed}: {}", bad.join("\n"));
    }
    eprintln!("explored {states} states over {runs} prune runs: every promise held");
}
