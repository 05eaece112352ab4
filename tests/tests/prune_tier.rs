//! Issue 17: the eviction tier on the real sandbox daemon, through the recording proxy.
//!
//! Item 1: the tier measures only the filesystem(s) that hold the daemon's image data (its
//! data-root; with the containerd store also containerd's root), never a `--path` that evicting
//! cannot lower; it stops when removals stop lowering usage; its log lines name the path.
//! Before, it compared the fullest of all measured paths with the low watermark and drained its
//! whole queue when that path held other data.

mod prune_common;

use std::os::unix::fs::MetadataExt;

use ccci_sandbox::images::ImageSpec;
use ccci_tests::proxy::RecordingProxy;
use prune_common::*;

/// A real run measuring the data-root: threshold 80 % (the ballast puts it at 85 %), low
/// watermark 10 % (the tier would take every queued pull), no leftover old enough to go, no
/// run stack live.
fn prune_under_pressure() -> Run {
    prune(&[
        "--path",
        &data_root(),
        "--threshold",
        "80",
        "--evict-low-watermark",
        "10",
        "--until",
        "3000d",
        "--run-stack-pattern",
        NO_RUN_PATTERN,
        "--json",
    ])
}

/// Load `spec` tagged `tag`, push it, and leave it as a swarm deploy leaves an image: pulled
/// by digest, no tag. Returns (id, digest reference).
fn cached_pull(spec: ImageSpec, tag: &str) -> (String, String) {
    let id = load(&spec.tag(tag));
    docker_ok(&["push", tag]);
    let digest_ref = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{index .RepoDigests 0}}",
        &id,
    ]);
    docker_ok(&["rmi", tag]);
    docker_ok(&["pull", &digest_ref]);
    assert_pulled_by_digest(&id, tag);
    (id, digest_ref)
}

/// A superseded cached pull of a repository of its own, and the newer cached pull (pulled
/// after it, built later) that supersedes it: (old id, new id). (A tagged image that was only
/// loaded supersedes nothing: item 9.)
fn superseded_pair(s: &str, clean: &mut Cleanup) -> (String, String) {
    let repo = format!("127.0.0.1:5000/ccci-test/tier-{s}");
    let old = ImageSpec::new(
        vec![noise_layer(&format!("{s}-old"), 2 << 20)],
        "2020-01-01T00:00:00Z",
    );
    let (old_id, _) = cached_pull(old, &format!("{repo}:1"));
    let new = ImageSpec::new(
        vec![noise_layer(&format!("{s}-new"), 1 << 16)],
        "2026-01-01T00:00:00Z",
    );
    let (new_id, _) = cached_pull(new, &format!("{repo}:2"));
    clean.images.extend([old_id.clone(), new_id.clone()]);
    (old_id, new_id)
}

/// `--path` is this machine's `/`, over the threshold with data the tier cannot touch; the
/// images live on the sandbox's data-root, another filesystem, far below it. Evicting cannot
/// lower `/`: the tier stays idle and says where it measured. Before: it evicted every queued
/// image (the superseded pull among them) and still found `/` above the watermark.
#[test]
#[serial_test::file_serial(sandbox)]
fn the_tier_measures_the_filesystem_of_the_image_data() {
    let s = seed("tierfs");
    let mut clean = Cleanup::default();
    let (old, new) = superseded_pair(&s, &mut clean);
    let root = ci_docker_prune::gates::disk_usage(std::path::Path::new("/")).unwrap();
    let data = ci_docker_prune::gates::disk_usage(&sb().data_root).unwrap();
    let dev = |p: &std::path::Path| std::fs::metadata(p).unwrap().dev();
    assert_ne!(
        dev(std::path::Path::new("/")),
        dev(&sb().data_root),
        "precondition: the data-root is a filesystem of its own"
    );
    // `/` at or above the threshold (2 points of slack: other processes write there too), the
    // low watermark below it, the data-root below both
    let threshold = root.percent().saturating_sub(2).max(2);
    let low = threshold - 1;
    assert!(
        data.percent() < low,
        "precondition: data-root at {}%, / at {}%",
        data.percent(),
        root.percent()
    );
    let (t, l) = (threshold.to_string(), low.to_string());
    let args = [
        "--path",
        "/",
        "--threshold",
        &t,
        "--evict-low-watermark",
        &l,
        "--until",
        "3000d",
        "--run-stack-pattern",
        NO_RUN_PATTERN,
        "--json",
    ];
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let run = prune(&dry);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !run.removed("images").contains(&old),
        "the dry run would evict for no relief: {}",
        run.stderr
    );
    let run = prune(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["outcome"], "pruned", "{}", run.stderr);
    assert!(
        image_exists(&old) && image_exists(&new),
        "evicted for no relief: {}",
        run.stderr
    );
    let data_root = data_root();
    assert!(
        run.stderr.contains(&format!(
            "ci-docker-prune: image data: {data_root} at {}% (< {threshold}%) after the leftovers — eviction tier idle",
            ci_docker_prune::gates::disk_usage(&sb().data_root).unwrap().percent()
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.requests.iter().all(|r| r.method != "DELETE"),
        "{:?}",
        run.requests
    );
}

/// The data-root is over the threshold because of a ballast file (not images); the queue's
/// first four images share every layer with a tagged image that stays, so deleting them frees
/// nothing there. The tier stops after three removals that freed less than 1 MiB each and
/// says so; the fourth and the rest of the queue stay. Before: it went on down the whole
/// queue, since the low watermark could never be reached.
#[test]
#[serial_test::file_serial(sandbox)]
fn the_tier_stops_when_removals_stop_lowering_usage() {
    let s = seed("relief");
    let mut clean = Cleanup::default();
    let repo = format!("127.0.0.1:5000/ccci-test/relief-{s}");
    let shared = || noise_layer(&format!("{s}-shared"), 2 << 20);
    // the tagged image that keeps the layers (newest of the repository: never evicted)
    let keeper =
        load(&ImageSpec::new(vec![shared()], "2026-06-01T00:00:00Z").tag(&format!("{repo}:keep")));
    clean.images.push(keeper.clone());
    // five cached pulls with the same layers: the newest (built last; no state dir, so all
    // got "now") is kept, the other four are the front of the queue (ordered by last use —
    // all "now" without a state dir —, then age). The tagged keeper, only loaded, supersedes
    // nothing (item 9).
    let mut pulls = Vec::new();
    for i in 1..=5 {
        let spec = ImageSpec::new(vec![shared()], &format!("1971-01-0{i}T00:00:00Z"));
        let (id, _) = cached_pull(spec, &format!("{repo}:{i}"));
        clean.images.push(id.clone());
        pulls.push(id);
    }
    let ballast = Ballast::fill_to(85);
    let run = prune_under_pressure();
    drop(ballast);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let removed = run.removed("images");
    assert_eq!(
        removed,
        pulls[..3].to_vec(),
        "the tier went on after removals stopped helping:\n{}",
        run.stderr
    );
    assert!(image_exists(&pulls[3]) && image_exists(&pulls[4]) && image_exists(&keeper));
    assert!(
        run.stderr.contains(
            "— eviction stopped: the last 3 removals freed less than 1 MiB each there; the space is held by something else"
        ) && run.stderr.contains(&format!("ci-docker-prune: {} at 8", data_root())),
        "{}",
        run.stderr
    );
}

/// Item 6: the tier applies the `--until` age guard to what the usage state *saw* used. A
/// superseded digest pulled a minute ago (the daemon's `pull` event) is kept under pressure;
/// with the guard set to zero (config `evict_min_age = "0s"`) the same run evicts it. Before,
/// `--until` did not apply to the tier at all: it went.
#[test]
#[serial_test::file_serial(sandbox)]
fn the_tier_keeps_a_pull_seen_within_until() {
    let s = seed("tierage");
    let mut clean = Cleanup::default();
    let (old, new) = superseded_pair(&s, &mut clean);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let args = |conf: &str| {
        let path = dir.path().join(format!("{}.toml", conf.len()));
        std::fs::write(&path, conf).unwrap();
        path
    };
    let guarded = args("");
    let unguarded = args("evict_min_age = \"0s\"\n");
    let run = |conf: &std::path::Path| {
        prune_with_state_dir(
            &[
                "--path",
                &data_root(),
                "--threshold",
                "80",
                "--evict-low-watermark",
                "10",
                "--until",
                "1h",
                "--run-stack-pattern",
                NO_RUN_PATTERN,
                "--config",
                &conf.to_string_lossy(),
                "--json",
            ],
            &state,
        )
    };
    let ballast = Ballast::fill_to(85);
    // the run reads the daemon's events up to the current second, exclusive: let the pull be
    // a couple of seconds old, as "a minute ago" is
    std::thread::sleep(std::time::Duration::from_secs(2));
    let first = run(&guarded);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        !first.removed("images").contains(&old) && image_exists(&old),
        "a superseded digest pulled a minute ago was evicted:\n{}",
        first.stderr
    );
    let second = run(&unguarded);
    drop(ballast);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.removed("images").contains(&old),
        "without the guard the same pull goes (the guard is what kept it):\n{}",
        second.stderr
    );
    assert!(image_exists(&new));
}

/// Item 10: a service's rollback image (`PreviousSpec`) is protected. A service deployed from
/// v1 and updated to v2 (both cached pulls of one repository): v1 is superseded and referenced
/// only by the previous spec. Under pressure the tier keeps it, so `docker service rollback`
/// needs no pull. Before: the tier evicted v1.
#[test]
#[serial_test::file_serial(sandbox)]
fn a_services_rollback_image_is_never_evicted() {
    let s = seed("rollback");
    let mut clean = Cleanup::default();
    let repo = format!("127.0.0.1:5000/ccci-test/rollback-{s}");
    let v1 = ImageSpec::new(
        vec![noise_layer(&format!("{s}-v1"), 2 << 20)],
        "2020-01-01T00:00:00Z",
    );
    let (v1, v1_ref) = cached_pull(v1, &format!("{repo}:1"));
    let v2 = ImageSpec::new(
        vec![noise_layer(&format!("{s}-v2"), 1 << 16)],
        "2026-01-01T00:00:00Z",
    );
    let (v2, v2_ref) = cached_pull(v2, &format!("{repo}:2"));
    clean.images.extend([v1.clone(), v2.clone()]);
    let name = format!("ccci-rollback-{s}");
    docker_ok(&[
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--replicas",
        "0",
        "--name",
        &name,
        &v1_ref,
    ]);
    clean.services.push(name.clone());
    docker_ok(&[
        "service",
        "update",
        "-d",
        "--no-resolve-image",
        "--image",
        &v2_ref,
        &name,
    ]);
    assert_eq!(
        docker_ok(&[
            "service",
            "inspect",
            "--format",
            "{{.PreviousSpec.TaskTemplate.ContainerSpec.Image}}",
            &name,
        ]),
        v1_ref,
        "precondition: v1 is the rollback image"
    );
    let ballast = Ballast::fill_to(85);
    let run = prune_under_pressure();
    drop(ballast);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !run.removed("images").contains(&v1) && image_exists(&v1),
        "the rollback image was evicted:\n{}",
        run.stderr
    );
    assert!(image_exists(&v2));
    // and the rollback needs no pull: it deploys v1 again
    docker_ok(&["service", "rollback", "-d", &name]);
    assert_eq!(
        docker_ok(&[
            "service",
            "inspect",
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
            &name,
        ]),
        v1_ref
    );
    remove_service(&name);
}

/// Item 5: the eviction queue is checked again, right before each removal, against the
/// services and containers as they are then. A service created after the plan was made (here:
/// right after the image listing, through the proxy) pinning a queued digest by digest alone
/// keeps it; the log says who references it. Before: the plan's service list was all the tier
/// knew, and a service with no task yet (replicas 0: no container for the daemon's 409) lost
/// its image.
#[test]
#[serial_test::file_serial(sandbox)]
fn a_service_created_mid_run_keeps_its_queued_image() {
    let s = seed("midrun");
    let mut clean = Cleanup::default();
    let repo = format!("127.0.0.1:5000/ccci-test/midrun-{s}");
    let v1 = ImageSpec::new(
        vec![noise_layer(&format!("{s}-v1"), 2 << 20)],
        "2020-01-01T00:00:00Z",
    );
    let (v1, v1_ref) = cached_pull(v1, &format!("{repo}:1"));
    let (v2, _) = cached_pull(
        ImageSpec::new(
            vec![noise_layer(&format!("{s}-v2"), 1 << 16)],
            "2026-01-01T00:00:00Z",
        ),
        &format!("{repo}:2"),
    );
    clean.images.extend([v1.clone(), v2.clone()]);
    let name = format!("ccci-midrun-{s}");
    clean.services.push(name.clone());
    let ballast = Ballast::fill_to(85);
    let (svc, pin) = (name.clone(), v1_ref.clone());
    let run = prune_with(
        &[
            "--path",
            &data_root(),
            "--threshold",
            "80",
            "--evict-low-watermark",
            "10",
            "--until",
            "3000d",
            "--run-stack-pattern",
            NO_RUN_PATTERN,
            "--json",
        ],
        move |proxy| {
            proxy.before_first(after_image_listing, move || {
                docker_ok(&[
                    "service",
                    "create",
                    "-d",
                    "--no-resolve-image",
                    "--replicas",
                    "0",
                    "--name",
                    &svc,
                    &pin,
                ]);
            })
        },
    );
    drop(ballast);
    remove_service(&name);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !run.removed("images").contains(&v1) && image_exists(&v1),
        "an image a service pinned mid-run was evicted:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "kept image {}: referenced since the plan was made by service {name} ({v1_ref})",
            &v1["sha256:".len()..][..12]
        )),
        "{}",
        run.stderr
    );
    assert!(
        !run.requests
            .iter()
            .any(|r| r.method == "DELETE" && r.path == format!("/images/{v1}")),
        "{:?}",
        run.requests
    );
}

/// `n` tag/untag events on the sandbox daemon, as fast as its socket answers (raw HTTP/1.0
/// over the unix socket: no CLI start per event): `tag` then `untag` of `repo:fN` on `id`.
fn flood_events(id: &str, repo: &str, n: usize) {
    use std::io::{Read, Write};
    let call = |method: &str, path: &str| {
        let mut s = std::os::unix::net::UnixStream::connect(sb().socket_path())
            .unwrap_or_else(|e| panic!("connect to the sandbox daemon: {e}"));
        write!(s, "{method} {path} HTTP/1.0\r\nHost: docker\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(
            out.starts_with("HTTP/1.0 20") || out.starts_with("HTTP/1.1 20"),
            "{method} {path}: {out}"
        );
    };
    for i in 0..n.div_ceil(2) {
        call("POST", &format!("/images/{id}/tag?repo={repo}&tag=f{i}"));
        call("DELETE", &format!("/images/{repo}:f{i}"));
    }
}

/// Rewrite the stamps the usage state keeps for image `id` and repository `repo` (the
/// state's own file, as a run left it): as if the runs that wrote them happened at `at`.
fn set_stamps(state: &std::path::Path, id: &str, repo: &str, at: i64) {
    let path = state.join("usage.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        v["images"].get(id).is_some(),
        "precondition: the state knows {id}: {text}"
    );
    v["images"][id] = at.into();
    v["observed"][id] = at.into();
    v["repos"][repo] = at.into();
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Args of a run over the threshold (the data-root is at least 1 %) whose tier may evict down
/// to 0 %, with no `until` that ages anything of this suite, and `conf`.
fn tier_args(conf: &std::path::Path) -> Vec<String> {
    [
        "--path",
        &data_root(),
        "--threshold",
        "1",
        "--evict-low-watermark",
        "0",
        "--until",
        "3000d",
        "--run-stack-pattern",
        NO_RUN_PATTERN,
        "--config",
        &conf.to_string_lossy(),
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn prune_state_run(
    args: &[String],
    state: &std::path::Path,
    setup: impl FnOnce(&RecordingProxy),
) -> Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    prune_at_with_env(
        &sb().socket_path(),
        &tagged_image_ids(),
        &args,
        setup,
        &[("STATE_DIRECTORY", state.as_os_str())],
    )
}

/// Item 4: events the daemon's ring lost are noticed, and what they may have said counts as
/// recent use. The state dates repository A's only image 30 days back (runs then); the
/// control dry run, whose events since the last run are all there, queues it (least recently
/// used). Then a swarm task deploys A — and 300 events, most of them after the run's `until`,
/// push the deploy and everything the last run read out of the 256-event ring before the
/// run reads it: it gets no event at all, fewer than 256. The run must say its events were
/// lost and keep A. Before: the count alone decided, no gap was seen, A was evicted first.
#[test]
#[serial_test::file_serial(sandbox)]
fn events_the_daemon_lost_are_noticed_and_count_as_recent_use() {
    let s = seed("evgap");
    let mut clean = Cleanup::default();
    let repo = format!("127.0.0.1:5000/ccci-test/evgap-{s}");
    let a = ImageSpec::new(
        vec![noise_layer(&format!("{s}-a"), 1 << 16)],
        "2020-01-01T00:00:00Z",
    );
    let (a, a_ref) = cached_pull(a, &format!("{repo}:1"));
    let flood_repo = format!("127.0.0.1:5000/ccci-test/evgap-flood-{s}");
    let flood = load_image(
        &format!("{s}-flood"),
        0,
        Some(&format!("{flood_repo}:keep")),
    );
    clean.images.extend([a.clone(), flood.clone()]);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let conf = dir.path().join("prune.toml");
    std::fs::write(&conf, "evict_min_age = \"0s\"\n").unwrap();
    let args = tier_args(&conf);
    let first = prune_state_run(&args, &state, |_| {});
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(image_exists(&a), "precondition: first sight keeps A");
    set_stamps(&state, &a, &repo, unix_now() - 30 * DAY as i64);
    // control: nothing lost since the last run — no gap, and A (30 days unused) is queued
    let mut dry = args.clone();
    dry.push("--dry-run".into());
    let control = prune_state_run(&dry, &state, |_| {});
    assert_eq!(control.code, 0, "{}", control.stderr);
    assert!(
        control.removed("images").contains(&a),
        "precondition: the state's 30 days queue A:\n{}",
        control.stderr
    );
    assert!(
        !control.stderr.contains("events before"),
        "a gap where no event was lost:\n{}",
        control.stderr
    );
    // A deployed by a swarm task, then the ring overflows between `until` and the read
    let c = docker_ok(&[
        "create",
        "--label",
        &format!("com.docker.swarm.service.name=evgap-{s}"),
        &a_ref,
        "/ccci-none",
    ]);
    docker_ok(&["rm", &c]);
    let (id, fr) = (flood.clone(), flood_repo.clone());
    let run = prune_state_run(&args, &state, move |proxy| {
        proxy.before_first(
            |r, _| r.path == "/events",
            move || flood_events(&id, &fr, 300),
        )
    });
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("ci-docker-prune: usage state: the daemon's events before")
            && run.stderr.contains(
                "are lost (the newest event the last run read is gone from the daemon's ring (it overflowed, or dockerd restarted)"
            ),
        "the lost events went unnoticed:\n{}",
        run.stderr
    );
    assert!(
        !run.removed("images").contains(&a) && image_exists(&a),
        "the recipe deployed just before the run was evicted on a 30-day-old date:\n{}",
        run.stderr
    );
}

/// Item 12: stamps written while a clock ran ahead (here: the state says image B and its
/// repository were last used in 2030) are clamped to the daemon's now and age from then; a
/// later run whose `evict_keep_recent` (1 s) and age guard (0 s) have passed queues B. Before:
/// B kept its 2030 dates, its repository counted as deployed "within 1 s" and it was never
/// queued until the clock reached 2030.
#[test]
#[serial_test::file_serial(sandbox)]
fn stamps_from_the_future_are_clamped_to_the_daemons_clock() {
    let s = seed("clock");
    let mut clean = Cleanup::default();
    let repo = format!("127.0.0.1:5000/ccci-test/clock-{s}");
    let b = ImageSpec::new(
        vec![noise_layer(&format!("{s}-b"), 1 << 16)],
        "2020-01-01T00:00:00Z",
    );
    let (b, _) = cached_pull(b, &format!("{repo}:1"));
    clean.images.push(b.clone());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let conf = dir.path().join("prune.toml");
    std::fs::write(&conf, "").unwrap();
    let args = tier_args(&conf);
    let first = prune_state_run(&args, &state, |_| {});
    assert_eq!(first.code, 0, "{}", first.stderr);
    const Y2030: i64 = 1_893_456_000;
    set_stamps(&state, &b, &repo, Y2030);
    let second = prune_state_run(&args, &state, |_| {});
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(image_exists(&b), "precondition: B used \"now\" stays");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let short = dir.path().join("short.toml");
    std::fs::write(
        &short,
        "evict_keep_recent = \"1s\"\nevict_min_age = \"0s\"\n",
    )
    .unwrap();
    let mut dry = tier_args(&short);
    dry.push("--dry-run".into());
    let third = prune_state_run(&dry, &state, |_| {});
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert!(
        third.removed("images").contains(&b),
        "an image stamped in 2030 is still kept as recently used:\nsecond run:\n{}\nthird run:\n{}",
        second.stderr,
        third.stderr
    );
    assert!(
        second.stderr.contains(
            "ci-docker-prune: usage state: 3 time stamp(s) lay in the future of the daemon's clock ("
        ),
        "{}",
        second.stderr
    );
    // and the state holds no stamp past the daemon's clock any more
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("usage.json")).unwrap()).unwrap();
    let limit = unix_now() + 60;
    for map in ["images", "observed", "repos"] {
        for (k, t) in v[map].as_object().unwrap() {
            assert!(
                t.as_i64().is_some_and(|t| t <= limit),
                "{map}[{k}] = {t} lies in the future"
            );
        }
    }
}

/// Item 9: the newest image of a repository is the one the daemon got last, not the one built
/// last. Repository N: two cached pulls both dated 1970 (as Nix `dockerTools` dates every
/// image), pulled one after the other: the first is superseded (before: a tie, both "newest",
/// neither queued). Repository R: the deployed digest (a cached pull) and a local `R:dev`
/// build (`docker load`, dated later): the build supersedes nothing, the deployed digest is
/// not queued (before: queued as superseded). One dry run with a fresh state directory (its
/// first run reads the daemon's whole event ring: the pulls are there).
#[test]
#[serial_test::file_serial(sandbox)]
fn the_newest_image_is_the_one_the_daemon_got_last() {
    let s = seed("gotlast");
    let mut clean = Cleanup::default();
    let nix = format!("127.0.0.1:5000/ccci-test/gotlast-nix-{s}");
    let nix_image = |v: &str| {
        ImageSpec::new(
            vec![noise_layer(&format!("{s}-{v}"), 1 << 16)],
            "1970-01-01T00:00:01Z",
        )
    };
    let (n1, _) = cached_pull(nix_image("n1"), &format!("{nix}:1"));
    // the daemon stamps events to the second: the second pull a second later
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (n2, _) = cached_pull(nix_image("n2"), &format!("{nix}:2"));
    let app = format!("127.0.0.1:5000/ccci-test/gotlast-app-{s}");
    let (deployed, _) = cached_pull(
        ImageSpec::new(
            vec![noise_layer(&format!("{s}-dep"), 1 << 16)],
            "2020-01-01T00:00:00Z",
        ),
        &format!("{app}:1"),
    );
    let dev = load(
        &ImageSpec::new(
            vec![noise_layer(&format!("{s}-dev"), 1 << 16)],
            "2026-06-01T00:00:00Z",
        )
        .tag(&format!("{app}:dev")),
    );
    clean
        .images
        .extend([n1.clone(), n2.clone(), deployed.clone(), dev.clone()]);
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("prune.toml");
    std::fs::write(&conf, "evict_min_age = \"0s\"\n").unwrap();
    let mut args = tier_args(&conf);
    args.push("--dry-run".into());
    let run = prune_state_run(&args, &dir.path().join("state"), |_| {});
    assert_eq!(run.code, 0, "{}", run.stderr);
    let queued = run.removed("images");
    assert!(
        !queued.contains(&deployed),
        "a local build made the deployed digest superseded:\n{}",
        run.stderr
    );
    assert!(
        queued.contains(&n1) && !queued.contains(&n2),
        "of two images built at the same date, the one pulled first is not the superseded one:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "eviction tier: superseded cached pull of {nix}, last used"
        )),
        "{}",
        run.stderr
    );
}

/// The churn replay's "it pruned: say so" (issue 17, the state explorer's replay): usage over
/// the threshold, and the build leftovers step alone brings it below. The run pruned: its
/// outcome is `pruned` (not `skipped` by `disk`), `gates` keeps the three gates that let it
/// prune (disk, runs, converge: the contract's order, all passed), `below_threshold_after`
/// names the step after which the disk was found below the threshold and the log says the
/// eviction tier stays idle, its queued cached pull kept. Before: `"outcome":"skipped",
/// "skipped_by":"disk"`, `gates` only the second disk check, and nothing about the tier.
#[test]
#[serial_test::file_serial(sandbox)]
fn a_run_whose_leftovers_bring_usage_below_the_threshold_says_it_pruned() {
    let s = seed("relieved");
    let mut clean = Cleanup::default();
    // a superseded cached pull: the tier's queue, which must stay (the tier is idle)
    let (old, new) = superseded_pair(&s, &mut clean);
    let disk = |p: &std::path::Path| ci_docker_prune::gates::disk_usage(p).unwrap();
    let total = {
        let u = disk(&sb().data_root);
        u.used + u.avail
    };
    // a build leftover (no tag, no repo digest, built in 2020) of 3 % of the data-root: its
    // removal alone lowers usage by at least two points
    let leftover = load(&ImageSpec::new(
        vec![noise_layer(
            &format!("{s}-leftover"),
            (total * 3 / 100) as usize,
        )],
        "2020-01-01T00:00:00Z",
    ));
    clean.images.push(leftover.clone());
    assert_eq!(
        docker_ok(&[
            "image",
            "inspect",
            "--format",
            "{{len .RepoTags}} {{len .RepoDigests}}",
            &leftover
        ]),
        "0 0",
        "precondition: a true build leftover"
    );
    // the threshold at today's usage: the disk gate passes (usage ≥ threshold)
    let threshold = disk(&sb().data_root).percent();
    assert!(threshold >= 4, "precondition: data-root at {threshold}%");
    let (t, l) = (threshold.to_string(), (threshold - 3).to_string());
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("ci-docker-prune.prom");
    let run = prune(&[
        "--path",
        &data_root(),
        "--threshold",
        &t,
        "--evict-low-watermark",
        &l,
        "--run-stack-pattern",
        NO_RUN_PATTERN,
        "--metrics-file",
        &metrics.to_string_lossy(),
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let after = disk(&sb().data_root).percent();
    assert!(
        after < threshold && !image_exists(&leftover),
        "precondition: the leftover went and usage fell below {threshold}% (now {after}%):\n{}",
        run.stderr
    );
    let v = run.json();
    assert_eq!(v["outcome"], "pruned", "it pruned: say so\n{v:#}");
    assert_eq!(v["skipped_by"], serde_json::Value::Null, "{v:#}");
    assert!(run.removed("images").contains(&leftover), "{v:#}");
    let gates: Vec<(String, bool)> = v["gates"]
        .as_array()
        .unwrap_or_else(|| panic!("gates missing: {v:#}"))
        .iter()
        .map(|g| {
            (
                g["gate"].as_str().unwrap_or("?").to_string(),
                g["pass"] == true,
            )
        })
        .collect();
    assert_eq!(
        gates,
        [("disk", true), ("runs", true), ("converge", true)]
            .map(|(g, p)| (g.to_string(), p))
            .to_vec(),
        "the gates that let it prune stay: {v:#}"
    );
    let below = &v["below_threshold_after"];
    assert_eq!(below["step"], "images", "{v:#}");
    let detail = format!("{} at {after}% (< {threshold}%)", data_root());
    assert!(
        below["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&detail)),
        "{detail} in {v:#}"
    );
    // the tier is idle: said in the log, its queue (the superseded pull) kept
    assert!(
        run.stderr.contains(&format!(
            "ci-docker-prune: {detail} after removing the build leftovers — below the threshold now, nothing more to do; eviction tier idle,"
        )),
        "{}",
        run.stderr
    );
    assert!(
        image_exists(&old) && image_exists(&new),
        "the idle tier evicted:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("ci-docker-prune: pruned ") && !run.stderr.contains("skipped by gate"),
        "{}",
        run.stderr
    );
    // `--metrics-file`: a pruned run, every gate open, the disk below the threshold at the end
    let text = std::fs::read_to_string(&metrics).unwrap_or_else(|e| panic!("metrics: {e}"));
    let lines: Vec<&str> = text.lines().collect();
    for want in [
        "ci_docker_prune_runs_total{outcome=\"pruned\"} 1",
        "ci_docker_prune_runs_total{outcome=\"skipped\"} 0",
        "ci_docker_prune_last_run_outcome{outcome=\"pruned\"} 1",
        "ci_docker_prune_gate_open{gate=\"disk\"} 1",
        "ci_docker_prune_gate_open{gate=\"runs\"} 1",
        "ci_docker_prune_gate_open{gate=\"converge\"} 1",
        "ci_docker_prune_disk_over_threshold 0",
    ] {
        assert!(lines.contains(&want), "missing {want}:\n{text}");
    }
    assert!(!text.contains("gate_closed_since"), "{text}");
}
