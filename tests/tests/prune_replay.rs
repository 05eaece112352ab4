//! The churn simulator checked against the real daemon (issue 13, item 4).
//!
//! A compressed trace — five "days" of releases of one recipe image (a shared base layer and
//! one own layer per release, served from the sandbox's registry), swarm deploys by digest and
//! teardowns, an upgrade test, a redeploy of an evicted release, a build leftover, and one prune
//! run per day — is replayed on the sandbox with the real `ci-docker-prune` binary (the eviction
//! tier on, its usage state in a temporary `STATE_DIRECTORY`), and in the simulator
//! (`ci_docker_prune_sim`) with the same disk, the same layer sizes and the same settings. The
//! images each run removes and the registry pulls (images, layers) must be the ones the
//! simulator predicts.
//!
//! The disk is set up so that every decision is at least a third of a percent away from a
//! percent boundary: a ballast puts the data-root at `NN.3 %`, the base layer is 1 % of it and
//! each release's own layer 2 %.

mod prune_common;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ccci_sandbox::fixture::{registry_blob_downloads, registry_log_offset};
use ccci_sandbox::images::{self, created_secs_ago, ImageSpec, Layer};
use ci_docker_prune::gates::disk_usage;
use ci_docker_prune_sim::policies::{EvictSettings, Tiered};
use ci_docker_prune_sim::simulate;
use ci_docker_prune_sim::store::Removal;
use ci_docker_prune_sim::trace::{
    Event, Params, Repo, RepoKind, ServiceSpec, Timed, Trace, Version, DAY,
};
use prune_common::*;

/// Deterministic incompressible bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The recipe's base layer: busybox (static) to run `sleep`, and `bytes` of data.
fn base_layer(seed: u64, bytes: usize) -> Layer {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("busybox-static is a sandbox prerequisite (apt-get install busybox-static)");
    Layer::new()
        .created_by("replay base")
        .host_file("/bin/busybox", &busybox)
        .and_then(|l| l.symlink("/bin/sleep", "busybox"))
        .and_then(|l| l.file("/base.bin", 0o644, noise(seed, bytes)))
        .expect("base layer")
}

fn own_layer(seed: u64, bytes: usize) -> Layer {
    Layer::new()
        .created_by("replay release")
        .file("/app.bin", 0o644, noise(seed, bytes))
        .expect("own layer")
}

fn load(spec: &ImageSpec) -> String {
    let info = sb();
    ccci_tests::block_on(async {
        let d = info.docker_negotiated().await.expect("sandbox docker");
        images::load(&d, spec).await.expect("load image")
    })
}

/// The data-root's usage right now, as the disk gate measures it.
fn usage() -> (u64, u64) {
    let u = disk_usage(&sb().data_root).expect("statvfs data-root");
    (u.used, u.avail)
}

/// A ballast file on the data-root that puts its usage at `pct` percent (fractional); removed
/// on drop.
struct ReplayBallast(PathBuf);

impl ReplayBallast {
    fn to(pct: f64) -> Self {
        let path = sb().data_root.join("ccci-replay-ballast");
        let _ = std::fs::remove_file(&path);
        let (used, avail) = usage();
        let target = ((used + avail) as f64 * pct / 100.0) as u64;
        assert!(
            target > used + (64 << 20),
            "the data-root is already at {:.1} %, above the replay's {pct} %",
            used as f64 * 100.0 / (used + avail) as f64
        );
        let f = std::fs::File::create(&path).expect("create ballast");
        // real blocks, not a sparse file: write it
        let chunk = vec![0xa5u8; 8 << 20];
        let mut left = target - used;
        let mut w = std::io::BufWriter::new(f);
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            std::io::Write::write_all(&mut w, &chunk[..n]).expect("write ballast");
            left -= n as u64;
        }
        let f = w.into_inner().expect("flush ballast");
        f.sync_all().expect("sync ballast");
        ReplayBallast(path)
    }
}

impl Drop for ReplayBallast {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Services and images to remove at the end, whatever happens.
#[derive(Default)]
struct Clean {
    services: Vec<String>,
    images: Vec<String>,
}

impl Drop for Clean {
    fn drop(&mut self) {
        for s in &self.services {
            remove_service(s);
        }
        for i in &self.images {
            let _ = docker(&["rmi", i]);
        }
    }
}

/// What the replay does, step by step (`v` indexes the releases).
#[derive(Debug, Clone, Copy)]
enum Step {
    Deploy(usize),
    DeployThenUpgrade(usize, usize),
    Leftover,
    Timer,
}

const SCRIPT: &[Step] = &[
    Step::Deploy(0),
    Step::Timer, // below the threshold: nothing
    Step::Deploy(1),
    Step::Leftover,
    Step::Timer, // at the threshold: the leftover goes, enough
    Step::Deploy(2),
    Step::Timer, // above after the leftovers: the tier evicts the LRU superseded release
    Step::DeployThenUpgrade(1, 3),
    Step::Timer,
    Step::Deploy(2), // evicted on day 4: pulled again
    Step::Timer,
];

const RELEASES: usize = 4;
const BASELINE_PCT: f64 = 50.3;
const THRESHOLD: u8 = 57;
const LOW: u8 = 56;

/// The simulator's trace for the script, with the measured disk and the real layer sizes.
fn sim_trace(used: u64, avail: u64, base: u64, own: u64, leftover: u64) -> Trace {
    let mut params = Params::reference();
    params.name = "replay".into();
    params.disk_bytes = used + avail;
    params.start_used_bytes = used;
    params.days = 6;
    let mut layers = vec![base];
    let mut versions = Vec::new();
    for v in 0..RELEASES {
        layers.push(own);
        versions.push(Version {
            repo: 0,
            id: format!("sha256:{:064x}", v + 1),
            digest: Some(format!("sha256:{:064x}", v + 101)),
            tag: format!("{}", v + 1),
            created: v as i64 * DAY - DAY / 2,
            layers: vec![0, v + 1],
        });
    }
    layers.push(leftover);
    let leftover_v = versions.len();
    versions.push(Version {
        repo: 1,
        id: format!("sha256:{:064x}", 999),
        digest: None,
        tag: "leftover".into(),
        created: -DAY,
        layers: vec![layers.len() - 1],
    });
    let repos = vec![
        Repo {
            name: "replay/app".into(),
            kind: RepoKind::App,
            base: 0,
            versions: (0..RELEASES).collect(),
        },
        Repo {
            name: "replay/leftover".into(),
            kind: RepoKind::Build,
            base: 0,
            versions: vec![leftover_v],
        },
    ];
    let mut events = Vec::new();
    let mut day = 0i64;
    let mut run = 0u32;
    let svc = |v: usize, run: u32| ServiceSpec {
        name: format!("ccci-replay-{run}"),
        version: v,
    };
    for step in SCRIPT {
        let t = day * DAY + 3600 * 10;
        match *step {
            Step::Deploy(v) => {
                run += 1;
                events.push(Timed {
                    t,
                    ev: Event::Deploy {
                        run,
                        services: vec![svc(v, run)],
                        volume_bytes: 0,
                    },
                });
                events.push(Timed {
                    t: t + 600,
                    ev: Event::Teardown { run },
                });
            }
            Step::DeployThenUpgrade(a, b) => {
                run += 1;
                events.push(Timed {
                    t,
                    ev: Event::Deploy {
                        run,
                        services: vec![svc(a, run)],
                        volume_bytes: 0,
                    },
                });
                events.push(Timed {
                    t: t + 300,
                    ev: Event::Upgrade {
                        run,
                        services: vec![svc(b, run)],
                    },
                });
                events.push(Timed {
                    t: t + 600,
                    ev: Event::Teardown { run },
                });
            }
            Step::Leftover => events.push(Timed {
                t: t + 900,
                ev: Event::Leftover {
                    version: leftover_v,
                },
            }),
            Step::Timer => {
                events.push(Timed {
                    t: (day + 1) * DAY,
                    ev: Event::Timer,
                });
                day += 1;
            }
        }
    }
    Trace {
        params,
        layers,
        repos,
        versions,
        initial: Vec::new(),
        infra: Vec::new(),
        system_bytes: used,
        events,
    }
}

/// The simulator's prediction: per timer run, the removed images (by script name), and the
/// pulls (images, layers).
struct Prediction {
    removed: Vec<Vec<String>>,
    pulls: (u64, u64),
}

fn predict(trace: &Trace) -> Prediction {
    let tier = EvictSettings {
        low_watermark: LOW,
        keep_recent: Duration::from_secs(14 * 86_400),
    };
    let r = simulate(trace, &mut Tiered::new(THRESHOLD, tier), THRESHOLD);
    let timers: Vec<i64> = trace
        .events
        .iter()
        .filter(|e| e.ev == Event::Timer)
        .map(|e| e.t)
        .collect();
    let name = |v: usize| {
        if v < RELEASES {
            format!("v{}", v + 1)
        } else {
            "leftover".to_string()
        }
    };
    let removed = timers
        .iter()
        .map(|t| {
            let mut names: Vec<String> = r
                .removal_log
                .iter()
                .filter(|(at, _, _)| at == t)
                .map(|(_, v, why)| {
                    assert!(
                        matches!(why, Removal::Leftover | Removal::Superseded | Removal::Lru),
                        "{why:?}"
                    );
                    name(*v)
                })
                .collect();
            names.sort();
            names
        })
        .collect();
    Prediction {
        removed,
        pulls: (r.pulls.images, r.pulls.layers),
    }
}

#[test]
#[serial_test::file_serial(sandbox)]
fn the_simulator_predicts_removals_and_pulls_on_the_real_daemon() {
    let started = Instant::now();
    let info = sb();
    let s = seed("replay");
    let repo = format!("127.0.0.1:5000/ccci-replay/app-{s}");
    let mut clean = Clean::default();

    // Start from a pruned store: old leftovers of earlier tests would otherwise go in the
    // replay's first gated run and change its arithmetic. The tier is off for this one.
    let conf_dir = tempfile::tempdir().expect("tempdir");
    let off = conf_dir.path().join("off.toml");
    std::fs::write(&off, "evict = false\n").expect("write config");
    let pre = prune(&[
        "--threshold",
        "0",
        "--path",
        &data_root(),
        "--run-stack-pattern",
        NO_RUN_PATTERN,
        "--config",
        &off.to_string_lossy(),
        "--json",
    ]);
    assert_eq!(pre.code, 0, "{}", pre.stderr);

    // Precondition: no other repository has two cached pulls (the tier could pick an older one
    // of them before the replay's; the simulator does not model them).
    let listing = docker_ok(&[
        "image",
        "ls",
        "--digests",
        "--no-trunc",
        "--format",
        "{{.Repository}} {{.Digest}}",
    ]);
    let mut per_repo: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
    for l in listing.lines() {
        if let Some((r, d)) = l.split_once(' ') {
            if d != "<none>" {
                per_repo.entry(r).or_default().insert(d);
            }
        }
    }
    let crowded: Vec<&&str> = per_repo
        .iter()
        .filter(|(_, ds)| ds.len() > 1)
        .map(|(r, _)| r)
        .collect();
    assert!(
        crowded.is_empty(),
        "precondition: repositories with several cached pulls in the shared sandbox: {crowded:?}"
    );

    // Sizes: base 1 %, each release's own layer 2 %, the leftover 1 % of the data-root.
    let (used0, avail0) = usage();
    let total = used0 + avail0;
    let pct = |p: f64| (total as f64 * p / 100.0) as usize;
    let (base_bytes, own_bytes, leftover_bytes) = (pct(1.0), pct(2.0), pct(1.0));
    // FNV-1a of the run's seed: fresh layer contents for every run of the test
    let base_seed = s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });

    // The releases: built, loaded, pushed, removed locally (the registry has them).
    let mut refs = Vec::new();
    let mut ids = Vec::new();
    for v in 0..RELEASES {
        let mut spec = ImageSpec::new(
            vec![
                base_layer(base_seed, base_bytes),
                own_layer(base_seed + 1 + v as u64, own_bytes),
            ],
            &created_secs_ago((RELEASES - v) as u64 * 3600),
        );
        spec.cmd = vec!["/bin/sleep".into(), "3600".into()];
        let tag = format!("{repo}:{}", v + 1);
        let id = load(&spec.tag(&tag));
        docker_ok(&["push", &tag]);
        let digest_ref = docker_ok(&[
            "image",
            "inspect",
            "--format",
            "{{index .RepoDigests 0}}",
            &id,
        ]);
        docker_ok(&["rmi", &tag]);
        assert!(
            !image_exists(&id),
            "release {} still present after rmi",
            v + 1
        );
        refs.push(digest_ref);
        ids.push(id.clone());
        clean.images.push(id);
    }
    let leftover_spec = ImageSpec::new(
        vec![own_layer(base_seed + 100, leftover_bytes)],
        &created_secs_ago(2 * DAY as u64),
    );

    // The disk as the replay starts, and the simulator's prediction for it.
    let _ballast = ReplayBallast::to(BASELINE_PCT);
    let (used, avail) = usage();
    let trace = sim_trace(
        used,
        avail,
        base_bytes as u64,
        own_bytes as u64,
        leftover_bytes as u64,
    );
    let want = predict(&trace);

    // The replay.
    let state = tempfile::tempdir().expect("state dir");
    let conf = conf_dir.path().join("tier.toml");
    std::fs::write(
        &conf,
        // 30 days replayed in minutes: every pull is seconds old by the wall clock, so the
        // tier's age guard (`until` by default) is off here, as in the simulator
        format!("threshold = {THRESHOLD}\nevict = true\nevict_low_watermark = {LOW}\nevict_min_age = \"0s\"\n"),
    )
    .expect("write config");
    let offset = registry_log_offset(info);
    let mut run = 0;
    let mut leftover_id = String::new();
    let mut got_removed: Vec<Vec<String>> = Vec::new();
    let mut log = Vec::new();
    let name_of = |id: &str, leftover_id: &str| {
        ids.iter()
            .position(|i| i == id)
            .map(|v| format!("v{}", v + 1))
            .or_else(|| (id == leftover_id).then(|| "leftover".to_string()))
            .unwrap_or_else(|| format!("foreign {id}"))
    };
    for step in SCRIPT {
        match *step {
            Step::Deploy(v) => {
                run += 1;
                let name = format!("ccci-replay-{s}-{run}");
                clean.services.push(name.clone());
                deploy(&name, &refs[v], &ids[v]);
                remove_service(&name);
            }
            Step::DeployThenUpgrade(a, b) => {
                run += 1;
                let name = format!("ccci-replay-{s}-{run}");
                clean.services.push(name.clone());
                deploy(&name, &refs[a], &ids[a]);
                docker_ok(&[
                    "service",
                    "update",
                    "-d",
                    "--no-resolve-image",
                    "--image",
                    &refs[b],
                    &name,
                ]);
                wait_running(&name, &ids[b]);
                remove_service(&name);
            }
            Step::Leftover => {
                leftover_id = load(&leftover_spec);
                clean.images.push(leftover_id.clone());
            }
            Step::Timer => {
                // Usage times have one-second resolution: keep a "day"'s events, the run and
                // the next day's events in different seconds, as they are hours apart in the
                // simulator (a tie would fall back to the creation order).
                std::thread::sleep(Duration::from_millis(1100));
                let r = prune_with_state_dir(
                    &[
                        "--path",
                        &data_root(),
                        "--run-stack-pattern",
                        NO_RUN_PATTERN,
                        "--config",
                        &conf.to_string_lossy(),
                        "--json",
                    ],
                    state.path(),
                );
                assert_eq!(r.code, 0, "{}", r.stderr);
                let mut names: Vec<String> = r
                    .removed("images")
                    .iter()
                    .map(|id| name_of(id, &leftover_id))
                    .collect();
                names.sort();
                let state_json = std::fs::read_to_string(state.path().join("usage.json"))
                    .unwrap_or_else(|e| format!("no state file: {e}"));
                log.push(format!("{}state: {state_json}", r.stderr));
                got_removed.push(names);
                std::thread::sleep(Duration::from_millis(1100));
            }
        }
    }
    let blobs = registry_blob_downloads(info, offset).expect("registry log");
    let layer_gets = blobs
        .iter()
        .filter(|d| !ids.contains(d)) // a config blob's digest is the image id
        .count() as u64;
    let image_pulls = blobs.iter().filter(|d| ids.contains(d)).count() as u64;

    let elapsed = started.elapsed();
    eprintln!(
        "replay: {} runs, removed {got_removed:?}, pulls {image_pulls} images / {layer_gets} layers, in {:.1} s",
        got_removed.len(),
        elapsed.as_secs_f64()
    );
    assert_eq!(
        got_removed,
        want.removed,
        "removals per run differ from the simulator's prediction\nruns' logs:\n{}",
        log.join("\n---\n")
    );
    assert_eq!(
        (image_pulls, layer_gets),
        want.pulls,
        "registry pulls (images, layers) differ from the simulator's prediction; blobs: {blobs:?}"
    );
    // The prediction is not trivial: the tier evicted, a leftover went, an image came back.
    assert!(want.removed.iter().flatten().any(|n| n == "leftover"));
    assert!(
        want.removed
            .iter()
            .flatten()
            .filter(|n| n.starts_with('v'))
            .count()
            >= 3
    );
    assert!(want.pulls.0 > RELEASES as u64);
}

/// `docker service create` by digest, as a CI deploy does; waits until its task runs image `id`.
fn deploy(name: &str, digest_ref: &str, id: &str) {
    docker_ok(&[
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--name",
        name,
        digest_ref,
    ]);
    wait_running(name, id);
}

/// Wait until a task container of `service` runs image `id`.
fn wait_running(service: &str, id: &str) {
    let ok = wait_for(Duration::from_secs(120), || {
        let ps = docker_ok(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={service}"),
        ]);
        ps.lines()
            .any(|c| docker(&["inspect", "--format", "{{.Image}}", c]).1.trim() == id)
    });
    assert!(ok, "{service} did not run {id}");
}
