//! `ci-docker-prune` against the real sandbox daemon (issue 3, item 4). Every run of the binary
//! goes through the recording proxy, which fails the test on any request that asks for `all`,
//! touches volumes, uses a daemon-side image/container prune, or deletes a tagged image.

mod prune_common;

use std::time::Duration;

use ccci_sandbox::images::Layer;
use ci_docker_prune::actions::{Hooks, Step};
use ci_docker_prune::config::Threshold;
use ci_docker_prune::{Gate, Outcome, Settings};
use prune_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// POST `/v1.41/build?{query}` with a two-file `FROM scratch` context unique to `seed`, raw
/// over the daemon's socket (the context in the request body, as the CLI sends it); returns the
/// whole answer after checking its status.
fn post_build(query: &str, seed: &str) -> String {
    let ctx = Layer::new()
        .file(
            "Dockerfile",
            0o644,
            "FROM scratch\nCOPY a /a\nCOPY b /b\n".as_bytes().to_vec(),
        )
        .and_then(|l| l.file("a", 0o644, format!("a {seed}\n").into_bytes()))
        .and_then(|l| l.file("b", 0o644, format!("b {seed}\n").into_bytes()))
        .and_then(|l| l.tar())
        .unwrap_or_else(|e| panic!("build context: {e}"));
    let socket = sb().socket_path();
    let head = format!(
        "POST /v1.41/build?{query} HTTP/1.0\r\nHost: docker\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        ctx.len()
    );
    let out = ccci_tests::block_on(async move {
        let mut s = tokio::net::UnixStream::connect(&socket).await?;
        s.write_all(head.as_bytes()).await?;
        s.write_all(&ctx).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    })
    .unwrap_or_else(|e| panic!("build ({query}): {e}"));
    assert!(out.starts_with("HTTP/1.0 200"), "build failed: {out}");
    out
}

/// Build with BuildKit through the API (context in the request body), leaving build cache.
fn buildkit_build(tag: &str, seed: &str) {
    let out = post_build(&format!("version=2&t={tag}"), seed);
    assert!(!out.contains("\"error\""), "build failed: {out}");
}

fn build_cache_ids() -> Vec<String> {
    let out = docker_ok(&["system", "df", "-v", "--format", "{{json .BuildCache}}"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or(serde_json::Value::Null);
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["ID"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
#[serial_test::file_serial(sandbox)]
fn below_threshold_removes_nothing_and_keeps_the_cache() {
    let s = seed("below");
    let mut clean = Cleanup::default();
    let leftover = load_image(&s, 3 * DAY, None);
    clean.images.push(leftover.clone());
    let usage = ci_docker_prune::gates::disk_usage(&sb().data_root).unwrap();
    assert!(
        usage.percent() < 80,
        "data root already at {}%",
        usage.percent()
    );

    let run = prune(&["--path", &data_root(), "--until", "0s"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let expect = format!(
        "ci-docker-prune: {} at {}% (< 80%) — keeping local image cache, nothing to do",
        data_root(),
        usage.percent()
    );
    assert!(run.stdout.contains(&expect), "log: {}", run.stdout);
    assert!(
        image_exists(&leftover),
        "a leftover was removed below the threshold"
    );
    // Below the threshold the daemon is not even asked anything.
    assert!(run.requests.is_empty(), "{:?}", run.requests);

    let run = prune(&["--path", &data_root(), "--until", "0s", "--json"]);
    let j = run.json();
    assert_eq!(j["outcome"], "skipped");
    assert_eq!(j["skipped_by"], "disk");
    assert_eq!(j["removed"]["images"].as_array().map(Vec::len), Some(0));
    assert!(
        run.stderr.contains("keeping local image cache"),
        "{}",
        run.stderr
    );
}

#[test]
#[serial_test::file_serial(sandbox)]
fn under_pressure_removes_only_old_build_leftovers() {
    let s = seed("pressure");
    let mut clean = Cleanup::default();
    // A: untagged, no repo digest, 2 days old -> removed
    let old_leftover = load_image(&format!("{s}-a"), 2 * DAY, None);
    // B: untagged, no repo digest, 1 hour old -> kept (younger than until)
    let young_leftover = load_image(&format!("{s}-b"), 3600, None);
    // C: tagged, 30 days old -> kept
    let tagged_tag = format!("ccci-test/tagged:{s}");
    let tagged = load_image(&format!("{s}-c"), 30 * DAY, Some(&tagged_tag));
    // D: untagged WITH a repo digest (pulled by digest from the registry), 30 days old -> kept
    let repo = format!("127.0.0.1:5000/ccci-test/digested-{s}");
    let digested = load_image(&format!("{s}-d"), 30 * DAY, Some(&format!("{repo}:1")));
    docker_ok(&["push", &format!("{repo}:1")]);
    let digest_ref = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{index .RepoDigests 0}}",
        &digested,
    ]);
    docker_ok(&["rmi", &format!("{repo}:1")]);
    assert!(!image_exists(&digested));
    docker_ok(&["pull", &digest_ref]);
    assert_pulled_by_digest(&digested, "pulled by digest");
    // E: untagged leftover, 2 days old, used by a (young, stopped) container -> kept
    let used_leftover = load_image(&format!("{s}-e"), 2 * DAY, None);
    let user = docker_ok(&[
        "create",
        "--name",
        &format!("ccci-user-{s}"),
        &used_leftover,
    ]);
    // Volumes: a named one, and an anonymous one owned by a stopped container.
    let named_vol = format!("ccci-vol-{s}");
    docker_ok(&["volume", "create", &named_vol]);
    let anon_holder = docker_ok(&["create", "-v", "/data", &tagged]);
    let anon_vol = docker_ok(&[
        "container",
        "inspect",
        "--format",
        "{{(index .Mounts 0).Name}}",
        &anon_holder,
    ]);
    clean.images.extend([
        old_leftover.clone(),
        young_leftover.clone(),
        tagged.clone(),
        digested.clone(),
        used_leftover.clone(),
    ]);
    clean.containers.extend([user.clone(), anon_holder.clone()]);
    clean.volumes.extend([named_vol.clone(), anon_vol.clone()]);

    let ballast = Ballast::fill_to(85);
    let args = [
        "--path",
        &data_root(),
        "--run-stack-pattern",
        NO_RUN_PATTERN,
        "--json",
    ];
    let mut dry_args = args.to_vec();
    dry_args.push("--dry-run");
    let dry = prune(&dry_args);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(dry.json()["outcome"], "dry-run");
    assert!(image_exists(&old_leftover), "dry run removed something");

    let run = prune(&args);
    drop(ballast);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["outcome"], "pruned", "{j}");
    assert!(
        run.stderr.contains("(≥ 80%) — disk under pressure"),
        "{}",
        run.stderr
    );
    let removed = run.removed("images");
    assert!(removed.contains(&old_leftover), "{removed:?}");
    assert!(!image_exists(&old_leftover));
    for (what, id) in [
        ("young leftover", &young_leftover),
        ("tagged image", &tagged),
        ("untagged image with a repo digest", &digested),
        ("image used by a container", &used_leftover),
    ] {
        assert!(!removed.contains(id), "{what} listed as removed");
        assert!(image_exists(id), "{what} was removed");
    }
    // young stopped containers stay
    assert!(container_exists(&user) && container_exists(&anon_holder));
    assert!(volume_exists(&named_vol) && volume_exists(&anon_vol));
    // --dry-run --json listed exactly what the real run removed
    for kind in ["containers", "images", "build_cache"] {
        let mut a = dry.removed(kind);
        let mut b = run.removed(kind);
        a.sort();
        b.sort();
        assert_eq!(a, b, "dry run vs real run differ for {kind}");
    }

    // Same again with --until 0s: the young leftover and the stopped containers go, the
    // leftover used only by a removed container goes with them; volumes, tags and digests stay.
    let ballast = Ballast::fill_to(85);
    let run = prune(&[
        "--path",
        &data_root(),
        "--run-stack-pattern",
        NO_RUN_PATTERN,
        "--until",
        "0s",
        "--json",
    ]);
    drop(ballast);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let containers = run.removed("containers");
    assert!(containers.contains(&user) && containers.contains(&anon_holder));
    assert!(!container_exists(&user) && !container_exists(&anon_holder));
    let removed = run.removed("images");
    assert!(removed.contains(&young_leftover) && removed.contains(&used_leftover));
    assert!(!image_exists(&young_leftover) && !image_exists(&used_leftover));
    assert!(image_exists(&tagged), "tagged image removed");
    assert!(image_exists(&digested), "cached pull (repo digest) removed");
    assert!(volume_exists(&named_vol), "named volume removed");
    assert!(volume_exists(&anon_vol), "anonymous volume removed");
}

#[test]
#[serial_test::file_serial(sandbox)]
fn build_cache_older_than_until_is_removed() {
    let s = seed("bcache");
    let mut clean = Cleanup::default();
    let tag = format!("ccci-test/bk:{s}");
    buildkit_build(&tag, &s);
    clean.images.push(tag.clone());
    let before = build_cache_ids();
    assert!(
        !before.is_empty(),
        "precondition: the build left cache records"
    );
    let open = [
        "--threshold",
        "0",
        "--run-stack-pattern",
        NO_RUN_PATTERN,
        "--json",
    ];

    // Young cache survives a 24h run.
    let run = prune(&open);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.removed("build_cache").is_empty(), "{}", run.stdout);
    let prune_req = run
        .requests
        .iter()
        .find(|r| r.path == "/build/prune")
        .unwrap_or_else(|| panic!("no build prune request: {:?}", run.requests));
    assert_eq!(prune_req.query, r#"filters={"until":["86400s"]}"#);

    // With --until 0s it is old enough: the dry run lists it, the run removes exactly that.
    // (Docker 28.5 measured: a `/build/prune` with `until=0s` within a second of the build
    // removes nothing, a few seconds later everything unshared; 20.10 takes it at once.)
    std::thread::sleep(std::time::Duration::from_secs(3));
    let mut dry_args = open.to_vec();
    dry_args.extend(["--until", "0s", "--dry-run"]);
    let dry = prune(&dry_args);
    let listed = dry.removed("build_cache");
    assert!(
        !listed.is_empty(),
        "dry run lists no build cache: {}",
        dry.stdout
    );
    let mut args = open.to_vec();
    args.extend(["--until", "0s"]);
    let run = prune(&args);
    let mut removed = run.removed("build_cache");
    let mut listed = listed;
    removed.sort();
    listed.sort();
    assert_eq!(listed, removed, "dry run vs run (build cache)");
    let after = build_cache_ids();
    for id in &removed {
        assert!(!after.contains(id), "build cache {id} still there");
    }
    assert!(image_exists(&tag), "the tagged build result was removed");
}

#[test]
#[serial_test::file_serial(sandbox)]
fn live_run_stack_skips_by_runs() {
    let s = seed("runs");
    let mut clean = Cleanup::default();
    let leftover = load_image(&s, 3 * DAY, None);
    let img_tag = format!("ccci-test/svc:{s}");
    let svc_img = load_image(&format!("{s}-svc"), DAY, Some(&img_tag));
    clean.images.extend([leftover.clone(), svc_img]);
    remove_service(RUN_STACK_SERVICE);
    docker_ok(&[
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--replicas",
        "0",
        "--name",
        RUN_STACK_SERVICE,
        &img_tag,
    ]);
    clean.services.push(RUN_STACK_SERVICE.into());

    let run = prune(&["--threshold", "0", "--until", "0s", "--json"]);
    remove_service(RUN_STACK_SERVICE);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["outcome"], "skipped", "{j}");
    assert_eq!(j["skipped_by"], "runs");
    assert!(run.stderr.contains(RUN_STACK_SERVICE), "{}", run.stderr);
    assert!(run.stderr.contains("never prune during a CI run"));
    assert!(image_exists(&leftover));
    assert!(
        !run.requests.iter().any(|r| r.method != "GET"),
        "{:?}",
        run.requests
    );
}

#[test]
#[serial_test::file_serial(sandbox)]
fn converging_service_skips_by_converge() {
    let s = seed("conv");
    let name = format!("ccci-converge-{s}");
    let mut clean = Cleanup::default();
    let leftover = load_image(&s, 3 * DAY, None);
    clean.images.push(leftover.clone());
    // One task being started: its healthcheck has not passed yet (the start period is an
    // hour), so it stays `starting` — work in flight. (A replica no node can take is settled,
    // not converging: tests/prune_settled.rs.)
    docker_ok(&[
        "service",
        "create",
        "-d",
        "--health-cmd",
        "false",
        "--health-start-period",
        "1h",
        "--health-interval",
        "1h",
        "--name",
        &name,
        "redis:7-alpine",
    ]);
    clean.services.push(name.clone());
    let starting = wait_for(Duration::from_secs(120), || {
        docker_ok(&["service", "ps", "--format", "{{.CurrentState}}", &name])
            .starts_with("Starting")
    });
    assert!(starting, "precondition: the task is starting");

    let run = prune(&[
        "--threshold",
        "0",
        "--until",
        "0s",
        "--run-stack-pattern",
        NO_RUN_PATTERN,
        "--json",
    ]);
    remove_service(&name);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["skipped_by"], "converge", "{j}");
    assert!(
        run.stderr.contains(&format!("{name} task 1 starting")),
        "{}",
        run.stderr
    );
    assert!(image_exists(&leftover));
    assert!(!run.requests.iter().any(|r| r.method != "GET"));
    // one services list and one tasks list, whatever the number of services
    let count = |p: &str| run.requests.iter().filter(|r| r.path == p).count();
    assert_eq!((count("/services"), count("/tasks")), (1, 1));
}

/// Hooks that run `f` right before the gates are re-checked for `step`, and collect the log.
struct Before<F: FnMut()> {
    step: Step,
    f: F,
    log: Vec<String>,
}

impl<F: FnMut()> Before<F> {
    fn new(step: Step, f: F) -> Self {
        Before {
            step,
            f,
            log: Vec::new(),
        }
    }

    fn logged(&self, needle: &str) -> bool {
        self.log.iter().any(|l| l.contains(needle))
    }
}

impl<F: FnMut()> Hooks for Before<F> {
    fn log(&mut self, line: &str) {
        self.log.push(line.to_string());
    }
    fn before_step(&mut self, step: Step) {
        if step == self.step {
            (self.f)();
        }
    }
}

fn create_run_stack() {
    docker_ok(&[
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--replicas",
        "0",
        "--name",
        RUN_STACK_SERVICE,
        "ccci-sandbox/systemd-host:none-needed",
    ]);
}

/// Every gate open, `--until 0s`, through a recording proxy.
fn open_settings() -> Settings {
    Settings {
        threshold: Some(Threshold::Percent(0)),
        until: Some("0s".into()),
        ..Default::default()
    }
}

/// A run-stack service appears right before one step: that step and every later one never
/// run; the earlier ones did. `reclaimed_bytes` is exactly what the removed images weighed.
#[rstest::rstest]
#[case::before_containers(Step::Containers)]
#[case::before_images(Step::Images)]
#[case::before_build_cache(Step::BuildCache)]
#[serial_test::file_serial(sandbox)]
fn a_gate_closing_before_a_step_stops_the_run_there(#[case] step: Step) {
    let s = seed("midrun");
    let mut clean = Cleanup::default();
    let leftover = load_image(&s, 3 * DAY, None);
    let stopped_img = load_image(&format!("{s}-c"), DAY, Some(&format!("ccci-test/c:{s}")));
    let stopped = docker_ok(&["create", &stopped_img]);
    clean.images.extend([leftover.clone(), stopped_img]);
    clean.containers.push(stopped.clone());
    clean.services.push(RUN_STACK_SERVICE.into());
    remove_service(RUN_STACK_SERVICE);
    let sizes = image_sizes();

    let mut hooks = Before::new(step, create_run_stack);
    let (report, requests) = run_lib(open_settings(), &mut hooks);
    remove_service(RUN_STACK_SERVICE);

    assert_eq!(report.outcome, Outcome::Skipped, "{report:?}");
    assert_eq!(report.skipped_by, Some(Gate::Runs));
    assert!(
        hooks.logged("run stack live") && hooks.logged(RUN_STACK_SERVICE),
        "{:?}",
        hooks.log
    );
    let deletes = |prefix: &str| {
        requests
            .iter()
            .filter(|r| r.method == "DELETE" && r.path.starts_with(prefix))
            .count()
    };
    let pruned_cache = requests.iter().any(|r| r.path == "/build/prune");
    assert!(
        !pruned_cache,
        "the build cache step ran after the gate closed"
    );
    match step {
        Step::Containers => {
            assert!(report.removed.is_empty(), "{report:?}");
            assert_eq!(deletes("/containers/") + deletes("/images/"), 0);
            assert!(container_exists(&stopped) && image_exists(&leftover));
            assert!(hooks.logged("ci-docker-prune: skipped by gate runs, nothing removed"));
        }
        Step::Images => {
            assert!(report.removed.containers.contains(&stopped), "{report:?}");
            assert!(!container_exists(&stopped));
            assert!(report.removed.images.is_empty(), "{report:?}");
            assert_eq!(deletes("/images/"), 0, "an image delete was attempted");
            assert!(image_exists(&leftover));
            assert!(hooks.logged("ci-docker-prune: stopped by gate runs after removing"));
        }
        Step::BuildCache => {
            assert!(report.removed.images.contains(&leftover), "{report:?}");
            assert!(!image_exists(&leftover));
            assert!(hooks.logged("ci-docker-prune: stopped by gate runs after removing"));
        }
        // The eviction tier runs only when enabled and still under pressure: not this test.
        Step::Evict => unreachable!("not a case of this test"),
    }
    // what the removed images weighed, as the daemon listed them; no build cache was pruned
    let weighed: u64 = report
        .removed
        .images
        .iter()
        .filter_map(|id| sizes.get(id))
        .sum();
    assert_eq!(report.reclaimed_bytes, weighed, "{report:?}");
    if step == Step::BuildCache {
        assert!(weighed >= sizes[&leftover] && weighed > 0);
    }
}

/// An image the plan chose gets a container between the listing and its delete: the daemon
/// refuses (409), the image stays, the log says so, the run is not an error.
#[test]
#[serial_test::file_serial(sandbox)]
fn an_image_used_since_the_listing_is_kept_in_use_now() {
    let s = seed("inuse");
    let mut clean = Cleanup::default();
    let leftover = load_image(&s, 3 * DAY, None);
    clean.images.push(leftover.clone());
    let name = format!("ccci-inuse-{s}");
    clean.containers.push(name.clone());
    let mut hooks = Before::new(Step::Images, || {
        docker_ok(&["create", "--name", &name, &leftover]);
    });
    let (report, _) = run_lib(
        Settings {
            run_stack_pattern: Some(NO_RUN_PATTERN.into()),
            ..open_settings()
        },
        &mut hooks,
    );
    assert_eq!(report.outcome, Outcome::Pruned, "{report:?}");
    assert!(!report.removed.images.contains(&leftover));
    assert!(image_exists(&leftover), "an image in use was removed");
    let want = format!(
        "ci-docker-prune: kept image {}: in use now (",
        &leftover["sha256:".len()..][..12]
    );
    assert!(hooks.logged(&want), "no '{want}' in {:#?}", hooks.log);
}

/// Item 1 of issue 11: an old leftover tagged between the listing and the delete (a rebuild
/// with a full cache hit, `docker tag`) is re-inspected right before its delete and kept. A
/// delete by id would untag and delete it (measured: `Untagged` + `Deleted`).
#[test]
#[serial_test::file_serial(sandbox)]
fn an_image_tagged_after_the_listing_is_never_deleted() {
    let s = seed("retag");
    let mut clean = Cleanup::default();
    let leftover = load_image(&s, 3 * DAY, None);
    let tag = format!("ccci-test/retag:{s}");
    clean.images.extend([tag.clone(), leftover.clone()]);
    let (id, t) = (leftover.clone(), tag.clone());
    let run = prune_with(
        &[
            "--threshold",
            "0",
            "--run-stack-pattern",
            NO_RUN_PATTERN,
            "--json",
        ],
        move |proxy| {
            proxy.before_first(after_image_listing, move || {
                docker_ok(&["tag", &id, &t]);
            })
        },
    );
    assert!(
        image_exists(&tag),
        "the image tagged after the listing was deleted:\n{}",
        run.stderr
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.removed("images").contains(&leftover));
    // (the containerd store lists a tagged image with a repo digest as well: `repo@sha256:…`)
    let want = format!(
        "ci-docker-prune: kept image {}: tagged or pulled since it was listed ({tag}",
        &leftover["sha256:".len()..][..12]
    );
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with(&want) && l.ends_with("), never deleted")),
        "{}",
        run.stderr
    );
    // it was re-inspected, and never sent to DELETE
    assert!(run
        .requests
        .iter()
        .any(|r| r.method == "GET" && r.path == format!("/images/{leftover}/json")));
    assert!(!run
        .requests
        .iter()
        .any(|r| r.method == "DELETE" && r.path == format!("/images/{leftover}")));
}

/// The rest of the race: tagged after the re-inspection, right before the delete. The daemon
/// untags and deletes it; that is an incident: logged, in the JSON, exit 1.
#[test]
#[serial_test::file_serial(sandbox)]
fn an_image_untagged_by_its_delete_is_an_incident() {
    let s = seed("incident");
    let mut clean = Cleanup::default();
    let leftover = load_image(&s, 3 * DAY, None);
    let tag = format!("ccci-test/incident:{s}");
    clean.images.extend([tag.clone(), leftover.clone()]);
    let (id, t) = (leftover.clone(), tag.clone());
    let delete = format!("/images/{leftover}");
    let run = prune_with(
        &[
            "--threshold",
            "0",
            "--run-stack-pattern",
            NO_RUN_PATTERN,
            "--json",
        ],
        move |proxy| {
            proxy.before_first(
                move |r, _| r.method == "DELETE" && r.path == delete,
                move || {
                    docker_ok(&["tag", &id, &t]);
                },
            )
        },
    );
    assert_eq!(run.code, 1, "an incident must not exit 0: {}", run.stderr);
    let j = run.json();
    assert_eq!(j["outcome"], "error", "{j}");
    assert_eq!(j["incidents"][0]["image"], leftover.as_str(), "{j}");
    assert_eq!(j["incidents"][0]["untagged"][0], tag.as_str(), "{j}");
    assert!(
        j["error"]
            .as_str()
            .is_some_and(|e| e.contains("untagged by its delete")),
        "{j}"
    );
    assert!(
        run.stderr.contains(&format!(
            "ci-docker-prune: INCIDENT: image {} was tagged {tag} after its last check",
            &leftover["sha256:".len()..][..12]
        )),
        "{}",
        run.stderr
    );
    // what happened, in full: the daemon did delete it
    assert!(!image_exists(&leftover));
    assert!(run.removed("images").contains(&leftover));
}

/// Item 2: one item the daemon fails to remove (a `dead` container whose filesystem cannot be
/// removed, say) does not stop the run: the next items and steps run, the failure is logged
/// and reported, exit 1, and `removed` lists everything that did go.
#[test]
#[serial_test::file_serial(sandbox)]
fn a_failing_removal_is_reported_and_the_run_goes_on() {
    let s = seed("itemfail");
    let mut clean = Cleanup::default();
    let img = load_image(&format!("{s}-c"), DAY, Some(&format!("ccci-test/f:{s}")));
    let bad_ctr = docker_ok(&["create", &img]);
    let good_ctr = docker_ok(&["create", &img]);
    let bad_img = load_image(&format!("{s}-a"), 3 * DAY, None);
    let good_img = load_image(&format!("{s}-b"), 3 * DAY, None);
    clean
        .images
        .extend([img, bad_img.clone(), good_img.clone()]);
    clean.containers.extend([bad_ctr.clone(), good_ctr.clone()]);
    let (bc, bi) = (bad_ctr.clone(), bad_img.clone());
    let run = prune_with(
        &[
            "--threshold",
            "0",
            "--until",
            "0s",
            "--run-stack-pattern",
            NO_RUN_PATTERN,
            "--json",
        ],
        move |proxy| {
            let msg = "driver \"overlay2\" failed to remove root filesystem: injected by the test";
            proxy.answer(
                move |r, _| r.method == "DELETE" && r.path == format!("/containers/{bc}"),
                500,
                msg,
            );
            proxy.answer(
                move |r, _| r.method == "DELETE" && r.path == format!("/images/{bi}"),
                500,
                "injected by the test",
            );
        },
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["outcome"], "error", "{j}");
    let failed: Vec<(String, String)> = j["failures"]
        .as_array()
        .unwrap_or_else(|| panic!("no failures: {j}"))
        .iter()
        .map(|f| {
            assert!(
                f["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("injected by the test")),
                "{f}"
            );
            (
                f["step"].as_str().unwrap_or("").to_string(),
                f["id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        failed,
        [
            ("containers".to_string(), bad_ctr.clone()),
            ("images".to_string(), bad_img.clone())
        ]
    );
    // the run went on: the next container, the next image, the build cache step
    assert!(run.removed("containers").contains(&good_ctr), "{j}");
    assert!(!container_exists(&good_ctr));
    assert!(run.removed("images").contains(&good_img), "{j}");
    assert!(!image_exists(&good_img));
    assert!(run.requests.iter().any(|r| r.path == "/build/prune"));
    assert!(container_exists(&bad_ctr) && image_exists(&bad_img));
    assert!(
        run.stderr.contains(&format!(
            "ci-docker-prune: failed to remove stopped container {}",
            &bad_ctr[..12]
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("ci-docker-prune: error: 2 removals failed"),
        "{}",
        run.stderr
    );
}

/// An API error that leaves the run unable to gate (here the daemon answers 500 to the
/// services listing and to `/info` once the containers step removed something) stops the run
/// there: exit 1, `prune aborted, nothing further removed`, and the JSON lists what went before.
#[test]
#[serial_test::file_serial(sandbox)]
fn an_api_error_mid_run_stops_the_run_with_exit_1() {
    let s = seed("apierr");
    let mut clean = Cleanup::default();
    let img = load_image(&format!("{s}-c"), DAY, Some(&format!("ccci-test/e:{s}")));
    let stopped = docker_ok(&["create", &img]);
    let leftover = load_image(&s, 3 * DAY, None);
    clean.images.extend([img, leftover.clone()]);
    clean.containers.push(stopped.clone());
    let run = prune_with(
        &[
            "--threshold",
            "0",
            "--until",
            "0s",
            "--run-stack-pattern",
            NO_RUN_PATTERN,
            "--json",
        ],
        |proxy| {
            proxy.answer(
                |r, before| {
                    (r.path == "/services" || r.path == "/info")
                        && before.iter().any(|p| p.method == "DELETE")
                },
                500,
                "injected by the test: the daemon broke mid-run",
            )
        },
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["outcome"], "error", "{j}");
    let e = j["error"].as_str().unwrap_or_default();
    assert!(
        e.starts_with("prune aborted, nothing further removed:") && e.contains("injected"),
        "{j}"
    );
    assert!(run.removed("containers").contains(&stopped), "{j}");
    assert!(!container_exists(&stopped));
    // nothing after the error: no image delete, no build cache prune
    assert!(!run
        .requests
        .iter()
        .any(|r| r.path.starts_with("/images/sha256:") || r.path == "/build/prune"));
    assert!(image_exists(&leftover));
    assert!(
        run.stderr.contains("ci-docker-prune: error: prune aborted"),
        "{}",
        run.stderr
    );
}

/// POST /build with the legacy builder (`version=1`): every instruction commits an
/// intermediate image, the parent of the next. Untagged; returns the final image's id.
fn legacy_build(seed: &str) -> String {
    let out = post_build("version=1&rm=1", seed);
    let id = out
        .split("Successfully built ")
        .nth(1)
        .and_then(|r| r.get(..12))
        .unwrap_or_else(|| panic!("no image id in the build output: {out}"));
    docker_ok(&["image", "inspect", "--format", "{{.Id}}", id])
}

/// The first layer's diff id of an image (taken before it is deleted).
fn docker_layer0(id: &str) -> String {
    docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{index .RootFS.Layers 0}}",
        id,
    ])
}

/// Item 5: an untagged parent image the daemon deletes with its child is listed under
/// `removed.images` (the layers it releases are not: the daemon reports both as `Deleted`).
#[test]
#[serial_test::file_serial(sandbox)]
fn untagged_parents_deleted_with_an_image_are_listed() {
    let s = seed("parents");
    let mut clean = Cleanup::default();
    let child = legacy_build(&s);
    let parent = docker_ok(&["image", "inspect", "--format", "{{.Parent}}", &child]);
    assert!(
        parent.starts_with("sha256:"),
        "precondition: a legacy build leaves a parent image ({parent:?})"
    );
    let refs = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{len .RepoTags}} {{len .RepoDigests}}",
        &parent,
    ]);
    assert_eq!(refs, "0 0", "precondition: the parent is untagged");
    clean.images.extend([child.clone(), parent.clone()]);
    let first_layer = docker_layer0(&parent);
    let run = prune(&[
        "--threshold",
        "0",
        "--until",
        "0s",
        "--run-stack-pattern",
        NO_RUN_PATTERN,
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!image_exists(&child) && !image_exists(&parent));
    let removed = run.removed("images");
    assert!(removed.contains(&child), "{removed:?}");
    assert!(
        removed.contains(&parent),
        "the parent deleted with its child is not listed: {removed:?}"
    );
    // only images: the layer the parent released (its first layer's chain id is its diff id,
    // reported `Deleted` as well) is not listed
    assert!(
        !removed.contains(&first_layer),
        "a layer id listed as an image: {removed:?}"
    );
}

/// Item 5: the longest `until` Docker takes is accepted by the daemon (and one second more is
/// refused at parse time, exit 2: `prune_cli`). Before, it was refused by the daemon only at the
/// build cache step, after two steps had run, on every run.
#[test]
#[serial_test::file_serial(sandbox)]
fn the_longest_until_is_one_the_daemon_takes() {
    let run = prune(&[
        "--threshold",
        "0",
        "--until",
        "9223372036s",
        "--run-stack-pattern",
        NO_RUN_PATTERN,
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let prune_req = run
        .requests
        .iter()
        .find(|r| r.path == "/build/prune")
        .unwrap_or_else(|| panic!("no build prune request: {:?}", run.requests));
    assert_eq!(prune_req.query, r#"filters={"until":["9223372036s"]}"#);
    assert_eq!(run.json()["outcome"], "pruned");
}

/// Item 5: a `--path` that vanishes mid-run is a runtime error (exit 1, the JSON says what
/// happened), not a usage error (exit 2 "invalid --path").
#[test]
#[serial_test::file_serial(sandbox)]
fn a_path_vanishing_mid_run_is_a_runtime_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("measured");
    std::fs::create_dir(&path).unwrap();
    let p = path.clone();
    let run = prune_with(
        &[
            "--threshold",
            "0",
            "--path",
            &path_str(&path),
            "--run-stack-pattern",
            NO_RUN_PATTERN,
            "--json",
        ],
        move |proxy| {
            proxy.before_first(after_image_listing, move || {
                std::fs::remove_dir(&p).unwrap_or_else(|e| panic!("remove {}: {e}", p.display()))
            })
        },
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(!run.stderr.contains("invalid --path"), "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["outcome"], "error", "{j}");
    let e = j["error"].as_str().unwrap_or_default();
    assert!(
        e.contains(&format!("cannot measure disk usage of {}", path.display())),
        "{j}"
    );
    // nothing was removed after the path vanished: no delete at all
    assert!(!run.requests.iter().any(|r| r.method == "DELETE"));
}

/// The cache case that matters: a swarm deploy pulls by digest and leaves no tag; after the
/// teardown the daemon calls the image dangling. The prune must keep it.
#[test]
#[serial_test::file_serial(sandbox)]
fn swarm_deployed_image_survives_teardown_and_prune() {
    let s = seed("probe");
    let name = format!("ccci-probe-{s}");
    let mut clean = Cleanup::default();
    clean.services.push(name.clone());
    // Start from a store where redis:7-alpine is not tagged (a CI host never pulls it by tag).
    let (present, id, _) = docker(&["image", "inspect", "--format", "{{.Id}}", "redis:7-alpine"]);
    if present {
        let _ = docker(&["rmi", "redis:7-alpine"]);
        let _ = id;
    }
    // Deploy the way a CI deploy does: swarm resolves the tag to a digest and pulls by digest.
    docker_ok(&["service", "create", "-d", "--name", &name, "redis:7-alpine"]);
    let spec_image = docker_ok(&[
        "service",
        "inspect",
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        &name,
    ]);
    assert!(
        spec_image.contains("@sha256:"),
        "swarm did not pin a digest: {spec_image}"
    );
    let converged = wait_for(Duration::from_secs(180), || {
        docker_ok(&[
            "service",
            "ls",
            "--filter",
            &format!("name={name}"),
            "--format",
            "{{.Replicas}}",
        ]) == "1/1"
    });
    assert!(converged, "probe did not converge to 1/1");
    let task = docker_ok(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.service.name={name}"),
    ]);
    let image_id = docker_ok(&[
        "inspect",
        "--format",
        "{{.Image}}",
        task.lines().next().unwrap_or(""),
    ]);

    // Teardown as CI does it: the service goes (no volumes/secrets here), images stay.
    remove_service(&name);
    assert_pulled_by_digest(&image_id, "the deployed image");
    let digest_ref = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{index .RepoDigests 0}}",
        &image_id,
    ]);
    let dangling = docker_ok(&[
        "image",
        "ls",
        "-q",
        "--no-trunc",
        "--filter",
        "dangling=true",
    ]);
    // The legacy store calls the deployed image dangling; the containerd store lists it under
    // the digest-pinned name the service pulled (`redis:7-alpine@sha256:…`), not dangling.
    assert_eq!(
        dangling.lines().any(|l| l == image_id),
        !containerd_store(),
        "precondition: the daemon calls the deployed image dangling on the legacy store only"
    );

    // Every gate open, --until 0s: the image stays.
    let run = prune(&[
        "--threshold",
        "0",
        "--until",
        "0s",
        "--run-stack-pattern",
        NO_RUN_PATTERN,
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["outcome"], "pruned");
    assert!(!run.removed("images").contains(&image_id));
    assert!(
        image_exists(&image_id),
        "ci-docker-prune removed the deployed redis image"
    );
    let dry = prune(&[
        "--threshold",
        "0",
        "--until",
        "0s",
        "--run-stack-pattern",
        NO_RUN_PATTERN,
        "--json",
        "--dry-run",
    ]);
    assert!(!dry.removed("images").contains(&image_id));

    // Why selection is ours. Legacy store: the daemon's own dangling prune deletes it.
    // Containerd store: the dangling prune keeps it (it has a name), and the daemon's prune
    // with `--all` (NixOS autoPrune's flags, `until=24h`) deletes it — on both stores the
    // daemon has a prune that takes the cache; only our own selection keeps it.
    docker_ok(&["image", "prune", "-f"]);
    if containerd_store() {
        assert!(
            image_exists(&image_id),
            "containerd store: docker image prune (dangling) deleted the named swarm pull"
        );
        // (`until` would not do: this store filters on when the image record was made — the
        // pull a minute ago —, not on the image's creation time two years back)
        docker_ok(&["image", "prune", "-a", "-f"]);
    }
    assert!(
        !image_exists(&image_id),
        "the daemon's own prune kept it: the reason for our own selection is gone"
    );
    // Leave the store warm for whoever comes next, as a swarm deploy leaves it: pulled by
    // digest, no tag (a pull by tag would make the gate's probe image a tagged one).
    docker_ok(&["pull", &digest_ref]);
}

/// Push `tag` (an image already loaded under it) and pull it back by digest only; returns
/// the digest reference.
fn push_and_repull_by_digest(tag: &str, id: &str) -> String {
    docker_ok(&["push", tag]);
    let digest_ref = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{index .RepoDigests 0}}",
        id,
    ]);
    docker_ok(&["rmi", tag]);
    docker_ok(&["pull", &digest_ref]);
    digest_ref
}

#[test]
#[serial_test::file_serial(sandbox)]
fn superseded_cached_pulls_go_only_with_the_opt_in() {
    let s = seed("superseded");
    let mut clean = Cleanup::default();
    let repo = format!("127.0.0.1:5000/ccci-test/sup-{s}");
    // v1: 30 days old, now only a cached pull (digest, no tag); v2: newer, tagged.
    let v1 = load_image(&format!("{s}-v1"), 30 * DAY, Some(&format!("{repo}:1")));
    push_and_repull_by_digest(&format!("{repo}:1"), &v1);
    let v2 = load_image(&format!("{s}-v2"), 2 * DAY, Some(&format!("{repo}:2")));
    // w1/w2: the same situation, but a service still references w1 by digest.
    let wrepo = format!("127.0.0.1:5000/ccci-test/supref-{s}");
    let w1 = load_image(&format!("{s}-w1"), 30 * DAY, Some(&format!("{wrepo}:1")));
    let w1_ref = push_and_repull_by_digest(&format!("{wrepo}:1"), &w1);
    let w2 = load_image(&format!("{s}-w2"), 2 * DAY, Some(&format!("{wrepo}:2")));
    let svc = format!("ccci-supref-{s}");
    docker_ok(&[
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--replicas",
        "0",
        "--name",
        &svc,
        &w1_ref,
    ]);
    clean.services.push(svc.clone());
    clean
        .images
        .extend([v1.clone(), v2.clone(), w1.clone(), w2.clone()]);

    let open = [
        "--threshold",
        "0",
        "--run-stack-pattern",
        NO_RUN_PATTERN,
        "--json",
    ];
    // Default policy: a cached pull is never removed.
    let run = prune(&open);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(image_exists(&v1) && image_exists(&w1));

    // Opt-in via the config file: the superseded, unreferenced pull goes; the referenced stays.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("prune.toml");
    std::fs::write(&conf, "reclaim_superseded_pulls = true\n").unwrap();
    let conf = conf.to_string_lossy().into_owned();
    let mut args = open.to_vec();
    args.extend(["--config", &conf]);
    let run = prune(&args);
    remove_service(&svc);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let removed = run.removed("images");
    assert!(removed.contains(&v1), "{removed:?}\n{}", run.stderr);
    assert!(!image_exists(&v1));
    assert!(
        run.stderr.contains("superseded cached pull of"),
        "{}",
        run.stderr
    );
    assert!(
        !removed.contains(&w1),
        "a pull referenced by a service was removed"
    );
    assert!(image_exists(&w1) && image_exists(&v2) && image_exists(&w2));
}

#[test]
#[serial_test::file_serial(sandbox)]
fn an_image_in_use_is_a_conflict_never_forced() {
    let s = seed("conflict");
    let mut clean = Cleanup::default();
    let leftover = load_image(&s, 3 * DAY, None);
    let user = docker_ok(&["create", &leftover]);
    clean.images.push(leftover.clone());
    clean.containers.push(user.clone());
    let info = sb();
    let host = ci_docker_prune::config::DockerHost::parse(&info.docker_host).unwrap();
    let removal = ccci_tests::block_on(async {
        let client = ci_docker_prune::docker::DockerClient::connect(&host).await?;
        client.remove_image(&leftover).await
    })
    .unwrap_or_else(|e| panic!("remove_image: {e}"));
    match removal {
        ci_docker_prune::docker::Removal::Conflict(msg) => {
            assert!(
                msg.contains("being used") || msg.contains("conflict"),
                "{msg}"
            )
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(image_exists(&leftover), "an image in use was removed");
}

/// Issue 12 item 3: with the containerd image store, the disk gate also measures the
/// filesystems of the daemon's data-root and containerd's root, found from the daemon
/// (`GET /info`, once, remembered in the state dir) and named in the log line; a run that
/// knows them measures them below the threshold without contacting the daemon. With the
/// legacy store only the `--path`s count, as before.
#[test]
#[serial_test::file_serial(sandbox)]
fn the_disk_gate_measures_where_the_daemon_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let conf = dir.path().join("prune.toml");
    std::fs::write(&conf, format!("state_dir = \"{}\"\n", state.display())).unwrap();
    let conf = conf.to_string_lossy().into_owned();
    // `--path` is this machine's root, well below the threshold; the data-root goes above it
    let calm = ci_docker_prune::gates::disk_usage(std::path::Path::new("/")).unwrap();
    assert!(calm.percent() < 80, "/ already at {}%", calm.percent());
    let ballast = sb().ballast(85).unwrap();
    let args = [
        "--path",
        "/",
        "--config",
        &conf,
        "--dry-run",
        "--run-stack-pattern",
        NO_RUN_PATTERN,
    ];
    let run = prune(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.requests.iter().any(|r| r.path == "/info"),
        "the roots were not asked for: {:?}",
        run.requests
    );
    // a dry run measures them and writes no state (issue 17 item 13); a real run that
    // removes nothing here (nothing is 3000 days old, no eviction) remembers them
    assert_eq!(
        ci_docker_prune::roots::load(&state),
        None,
        "a dry run wrote state"
    );
    let real: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| *a != "--dry-run")
        .chain(["--until", "3000d", "--no-evict"])
        .collect();
    let run_real = prune(&real);
    assert_eq!(run_real.code, 0, "{}", run_real.stderr);
    let remembered = ci_docker_prune::roots::load(&state).expect("roots remembered");
    let data_root = data_root();
    if containerd_store() {
        let ctrd = format!("{data_root}/containerd/daemon");
        assert_eq!(
            remembered.gate_paths(),
            [
                std::path::PathBuf::from(&data_root),
                std::path::PathBuf::from(&ctrd)
            ]
        );
        // the data-root (and containerd's root on it) at 85 %, `/` far below: the gate passes
        let line = run
            .stdout
            .lines()
            .find(|l| l.ends_with("— disk under pressure"))
            .unwrap_or_else(|| panic!("the disk gate did not pass: {}", run.stdout));
        assert!(
            line.contains(&format!("{data_root} at 8"))
                && line.contains(&format!(
                    "containerd root {ctrd} (dockerd's own containerd at "
                )),
            "{line}"
        );
    } else {
        assert!(remembered.gate_paths().is_empty(), "{remembered:?}");
        assert!(
            run.stdout.contains("keeping local image cache"),
            "legacy store: only --path counts: {}",
            run.stdout
        );
    }
    // Known roots: below the threshold the daemon is not contacted, the roots still measured.
    ballast.remove().unwrap();
    let run = prune(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.requests.is_empty(), "{:?}", run.requests);
    assert!(
        run.stdout.contains("keeping local image cache"),
        "{}",
        run.stdout
    );
    if containerd_store() {
        assert!(
            run.stdout.contains("containerd image store: Docker root"),
            "{}",
            run.stdout
        );
    }
}

/// Issue 17, item 8: a stopped container is aged by when it stopped (`State.FinishedAt`), not
/// by when it was created. A container created before `--until` and stopped just now is young,
/// and so is the build leftover only it uses; once it has been stopped longer than `--until`,
/// both go. Before: both were in the plan as soon as the container was *created* long enough
/// ago. Only the stopped containers created before the cutoff are inspected.
#[test]
#[serial_test::file_serial(sandbox)]
fn stopped_containers_age_from_when_they_stopped() {
    let s = seed("finished");
    let mut clean = Cleanup::default();
    // an untagged build leftover with a shell (the host's busybox), so a container can run
    let mut spec = ccci_sandbox::images::ImageSpec::unique_test_image(&s, 1, 3 * DAY)
        .unwrap_or_else(|e| panic!("test image: {e}"));
    spec.layers.push(
        Layer::new()
            .dir("/bin", 0o755)
            .and_then(|l| l.host_file("/bin/sh", std::path::Path::new("/bin/busybox")))
            .unwrap_or_else(|e| panic!("busybox layer: {e}")),
    );
    let info = sb();
    let image = ccci_tests::block_on(async {
        let d = info
            .docker_negotiated()
            .await
            .unwrap_or_else(|e| panic!("sandbox docker: {e}"));
        ccci_sandbox::images::load(&d, &spec)
            .await
            .unwrap_or_else(|e| panic!("load: {e}"))
    });
    clean.images.push(image.clone());
    let ctr = docker_ok(&["create", "--entrypoint", "/bin/sh", &image, "-c", "exit 0"]);
    clean.containers.push(ctr.clone());
    // created 6 s before it runs (and stops at once): older than `--until 4s` by creation,
    // younger by its stop
    std::thread::sleep(Duration::from_secs(6));
    docker_ok(&["start", "-a", &ctr]);
    assert_eq!(
        docker_ok(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            &ctr
        ]),
        "exited 0",
        "precondition"
    );
    let dry = || {
        prune(&[
            "--threshold",
            "0",
            "--until",
            "4s",
            "--no-evict",
            "--run-stack-pattern",
            NO_RUN_PATTERN,
            "--dry-run",
            "--json",
        ])
    };
    let run = dry();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !run.removed("containers").contains(&ctr),
        "a container stopped just now was planned for removal: {}",
        run.stdout
    );
    assert!(
        !run.removed("images").contains(&image),
        "the image of a container stopped just now was planned for removal: {}",
        run.stdout
    );
    let inspected = |run: &Run| {
        run.requests
            .iter()
            .filter(|r| r.method == "GET" && r.path == format!("/containers/{ctr}/json"))
            .count()
    };
    assert_eq!(inspected(&run), 1, "{:?}", run.requests);
    // stopped longer than `until` now: it goes, and its image with it
    std::thread::sleep(Duration::from_secs(5));
    let run = dry();
    assert!(run.removed("containers").contains(&ctr), "{}", run.stdout);
    assert!(run.removed("images").contains(&image), "{}", run.stdout);
    // a young container (created after the cutoff) is not inspected at all
    let young = docker_ok(&["create", "--entrypoint", "/bin/sh", &image, "-c", "exit 0"]);
    clean.containers.push(young.clone());
    let run = dry();
    assert!(
        !run.requests
            .iter()
            .any(|r| r.path == format!("/containers/{young}/json")),
        "{:?}",
        run.requests
    );
}

/// Issue 17, item 11: an image pulled by tag, pinned by digest in a service spec (scaled to
/// zero: no task, no container), whose tag then moved to a newer image. The containerd store
/// lists it with no tag and no repo digest — exactly like a build leftover (the daemon says
/// so below) — but the spec still references it: it must stay. Before: selected as a build
/// leftover and deleted. On the legacy store it keeps its repo digest (a cached pull).
#[test]
#[serial_test::file_serial(sandbox)]
fn an_image_a_service_pins_by_digest_is_no_leftover_after_its_tag_moved() {
    let s = seed("pinned");
    let mut clean = Cleanup::default();
    let tag = format!("127.0.0.1:5000/ccci-test/pinned-{s}:t");
    let old = load_image(&format!("{s}-old"), 30 * DAY, Some(&tag));
    clean.images.push(old.clone());
    // pulled by tag, as a user or a CI step pulls it
    docker_ok(&["push", &tag]);
    docker_ok(&["rmi", &tag]);
    docker_ok(&["pull", &tag]);
    let svc = format!("ccci-pinned-{s}");
    docker_ok(&[
        "service",
        "create",
        "-d",
        "--replicas",
        "0",
        "--name",
        &svc,
        &tag,
    ]);
    clean.services.push(svc.clone());
    let spec = docker_ok(&[
        "service",
        "inspect",
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        &svc,
    ]);
    assert!(
        spec.contains("@sha256:"),
        "precondition: pinned by digest: {spec}"
    );
    // the tag moves to a newer image
    let new = load_image(&format!("{s}-new"), 2 * DAY, Some(&tag));
    clean.images.push(new.clone());
    assert_ne!(old, new);
    let refs = |what: &str| docker_ok(&["image", "inspect", "--format", what, &old]);
    if containerd_store() {
        assert_eq!(
            (refs("{{json .RepoTags}}"), refs("{{json .RepoDigests}}")),
            ("[]".to_string(), "[]".to_string()),
            "precondition: the containerd store lists it like a build leftover"
        );
    }
    let run = prune(&[
        "--threshold",
        "0",
        "--until",
        "25d",
        "--run-stack-pattern",
        NO_RUN_PATTERN,
        "--no-evict",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["outcome"], "pruned", "{}", run.stdout);
    assert!(
        !run.removed("images").contains(&old),
        "the image the service pins was removed as a leftover: {}",
        run.stderr
    );
    assert!(image_exists(&old), "{}", run.stderr);
}
