//! `ci-docker-prune` against the real sandbox daemon (issue 3, item 4). Every run of the binary
//! goes through the recording proxy, which fails the test on any request that asks for `all`,
//! touches volumes, uses a daemon-side image/container prune, or deletes a tagged image.

mod prune_common;

use std::time::Duration;

use ccci_sandbox::images::Layer;
use ccci_tests::proxy::{violations, RecordingProxy};
use ci_docker_prune::actions::{Hooks, Step};
use ci_docker_prune::config::Threshold;
use ci_docker_prune::{Gate, Outcome, Settings};
use prune_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Build with BuildKit through the API (context in the request body), leaving build cache.
fn buildkit_build(tag: &str, seed: &str) {
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
    let tag = tag.to_string();
    let out = ccci_tests::block_on(async move {
        let mut s = tokio::net::UnixStream::connect(&socket).await?;
        let head = format!(
            "POST /v1.41/build?version=2&t={tag} HTTP/1.0\r\nHost: docker\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
            ctx.len()
        );
        s.write_all(head.as_bytes()).await?;
        s.write_all(&ctx).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    })
    .unwrap_or_else(|e| panic!("buildkit build: {e}"));
    assert!(out.starts_with("HTTP/1.0 200"), "build failed: {out}");
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
    let refs = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{len .RepoTags}} {{len .RepoDigests}}",
        &digested,
    ]);
    assert_eq!(refs, "0 1", "precondition: pulled by digest, no tag");
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
    let img_tag = format!("ccci-test/svc:{s}");
    let svc_img = load_image(&format!("{s}-svc"), DAY, Some(&img_tag));
    clean.images.extend([leftover.clone(), svc_img]);
    // One replica that can never be placed: 0/1 running, forever converging.
    docker_ok(&[
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--replicas",
        "1",
        "--constraint",
        "node.labels.ccci-never==true",
        "--name",
        &name,
        &img_tag,
    ]);
    clean.services.push(name.clone());

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
        run.stderr.contains(&format!("{name} 0/1 tasks running")),
        "{}",
        run.stderr
    );
    assert!(image_exists(&leftover));
    assert!(!run.requests.iter().any(|r| r.method != "GET"));
    // one services list and one tasks list, whatever the number of services
    let count = |p: &str| run.requests.iter().filter(|r| r.path == p).count();
    assert_eq!((count("/services"), count("/tasks")), (1, 1));
}

struct CreateRunStackBefore(Step, Vec<String>);

impl Hooks for CreateRunStackBefore {
    fn log(&mut self, line: &str) {
        self.1.push(line.to_string());
    }
    fn before_step(&mut self, step: Step) {
        if step == self.0 {
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
    }
}

#[test]
#[serial_test::file_serial(sandbox)]
fn a_gate_closing_mid_run_stops_the_run() {
    let s = seed("midrun");
    let mut clean = Cleanup::default();
    let leftover = load_image(&s, 3 * DAY, None);
    let stopped = docker_ok(&["create", &leftover]);
    clean.images.push(leftover.clone());
    clean.containers.push(stopped.clone());
    clean.services.push(RUN_STACK_SERVICE.into());
    remove_service(RUN_STACK_SERVICE);

    let proxy = RecordingProxy::start(&sb().socket_path()).unwrap();
    let tagged = tagged_image_ids();
    let cfg = Settings {
        threshold: Some(Threshold::Percent(0)),
        until: Some("0s".into()),
        docker_host: Some(proxy.docker_host()),
        ..Default::default()
    }
    .validate(None)
    .unwrap();
    // The run-stack service appears after the containers step, before the images step.
    let mut hooks = CreateRunStackBefore(Step::Images, Vec::new());
    let report = ccci_tests::block_on(ci_docker_prune::run(&cfg, false, &mut hooks))
        .unwrap_or_else(|e| panic!("run: {e}"));
    remove_service(RUN_STACK_SERVICE);
    let bad = violations(&proxy.requests(), &tagged);
    assert!(bad.is_empty(), "{bad:?}");

    assert_eq!(report.outcome, Outcome::Skipped);
    assert_eq!(report.skipped_by, Some(Gate::Runs));
    assert!(report.removed.containers.contains(&stopped), "{report:?}");
    assert!(report.removed.images.is_empty(), "{report:?}");
    assert!(report.removed.build_cache.is_empty());
    assert!(
        image_exists(&leftover),
        "the images step ran after the gate closed"
    );
    assert!(!container_exists(&stopped));
    assert!(
        hooks
            .1
            .iter()
            .any(|l| l.contains("run stack live") && l.contains(RUN_STACK_SERVICE)),
        "{:?}",
        hooks.1
    );
    assert!(
        hooks
            .1
            .iter()
            .any(|l| l.starts_with("ci-docker-prune: stopped by gate runs")),
        "{:?}",
        hooks.1
    );
    // and no image delete was even attempted
    assert!(!proxy
        .requests()
        .iter()
        .any(|r| r.method == "DELETE" && r.path.starts_with("/images/")));
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
    let refs = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{len .RepoTags}} {{len .RepoDigests}}",
        &image_id,
    ]);
    assert_eq!(
        refs, "0 1",
        "precondition: deployed image has no tag, one repo digest"
    );
    let dangling = docker_ok(&[
        "image",
        "ls",
        "-q",
        "--no-trunc",
        "--filter",
        "dangling=true",
    ]);
    assert!(
        dangling.lines().any(|l| l == image_id),
        "precondition: the daemon calls the deployed image dangling"
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

    // Why selection is ours: the daemon's own dangling prune deletes it.
    docker_ok(&["image", "prune", "-f"]);
    assert!(
        !image_exists(&image_id),
        "docker image prune (dangling) kept it: the reason for our own selection is gone"
    );
    // Leave the store warm for whoever comes next.
    docker_ok(&["pull", "redis:7-alpine"]);
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
