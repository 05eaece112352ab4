//! A truly cold sandbox of the shape under test (`CCCI_SANDBOX_FLAVOUR`, `…_ENGINE`,
//! `…_IMAGE_STORE`), under a name of its own (`<shape name>-cold`, never the shared sandbox):
//! its state directory, registry storage and fixture marker removed first, only the download
//! caches (rootfs archive, fetched engines) kept. `sandbox up` must leave no local name of the
//! fixture in the daemon's store (so the first pull is cold and the probe's image is as a swarm
//! deploy leaves it), and the gate must pass right after.
//!
//! Why: on the containerd store a cold `up` (the fixture loaded and pushed) once left
//! `127.0.0.1:5000/library/redis:7-alpine` tagged, while a warm one (the registry already held
//! the fixture, so nothing was loaded) did not; CI on a machine whose sandboxes had run before
//! was green and a fresh machine failed 19 tests.

use std::path::Path;
use std::process::Command;

use ccci_sandbox::{SandboxConfig, Shape};
use ccci_tests::{block_on, workspace_root};

fn cold_cfg() -> SandboxConfig {
    let shape = Shape::from_env().expect("the shape variables name a shape");
    let mut cfg = SandboxConfig::named(&format!("{}-cold", shape.default_name()));
    cfg.shape = shape;
    cfg
}

/// `ccci-verify` with the cold sandbox's name and shape in its environment.
fn verify(cfg: &SandboxConfig) -> Command {
    let mut cmd = Command::new(ccci_tests::bins::verify_bin());
    cmd.current_dir(workspace_root())
        .env("CCCI_SANDBOX_NAME", &cfg.name)
        .env("CCCI_SANDBOX_FLAVOUR", cfg.shape.flavour.as_str())
        .env("CCCI_SANDBOX_ENGINE", cfg.shape.engine.as_str())
        .env("CCCI_SANDBOX_IMAGE_STORE", cfg.shape.image_store.as_str())
        .env_remove("CCCI_SANDBOX_STATE_DIR")
        .env_remove("CCCI_SANDBOX_RUN_DIR");
    cmd
}

fn run(cmd: &mut Command) -> (Option<i32>, String) {
    let out = cmd.output().expect("run ccci-verify");
    (
        out.status.code(),
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Brings the cold sandbox down and removes its state when the test ends, pass or fail.
struct Down<'a>(&'a SandboxConfig);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let (code, out) = run(verify(self.0).args(["sandbox", "down", "--purge"]));
        if code != Some(0) {
            eprintln!("cold sandbox teardown: {out}");
        }
    }
}

#[test]
fn a_cold_up_leaves_no_local_fixture_and_the_gate_passes_right_after() {
    let cfg = cold_cfg();
    let _down = Down(&cfg);
    let (code, out) = run(verify(&cfg).args(["sandbox", "down", "--purge"]));
    assert_eq!(code, Some(0), "purge before the cold up: {out}");
    let registry = cfg.state_dir.join("registry");
    assert!(
        !Path::new(&registry).exists() && !cfg.state_dir.exists(),
        "precondition: no state left for {} (registry storage and fixture marker at {})",
        cfg.name,
        registry.display()
    );

    let (code, out) = run(verify(&cfg).args(["sandbox", "up"]));
    assert_eq!(code, Some(0), "cold `sandbox up`: {out}");
    // the cold path really ran: the fixture was pushed (its marker written) just now
    let marker = cfg.layout().fixture_marker();
    assert!(
        marker.is_file(),
        "the cold up pushed the fixture and marked it at {}",
        marker.display()
    );

    let (code, out) = run(verify(&cfg).args(["sandbox", "status", "--json"]));
    assert_eq!(code, Some(0), "status of the cold sandbox: {out}");
    let socket = cfg.socket();
    let docker = bollard::Docker::connect_with_unix(
        &socket.to_string_lossy(),
        120,
        bollard::API_DEFAULT_VERSION,
    )
    .expect("connect to the cold sandbox's daemon");
    let docker = block_on(docker.negotiate_version()).expect("negotiate the API version");
    // independent of the sandbox's own check: every name the daemon lists, by the fixture's
    // repository in any registry or by its label
    let images = block_on(
        docker.list_images(Some(
            bollard::query_parameters::ListImagesOptionsBuilder::default()
                .all(true)
                .build(),
        )),
    )
    .expect("list images");
    let left: Vec<String> = images
        .iter()
        .filter(|img| {
            img.labels.contains_key("io.ccci.fixture")
                || img
                    .repo_tags
                    .iter()
                    .chain(img.repo_digests.iter())
                    .any(|n| n.contains("redis"))
        })
        .map(|img| format!("{} {:?} {:?}", img.id, img.repo_tags, img.repo_digests))
        .collect();
    assert!(
        left.is_empty(),
        "after a cold `sandbox up` ({}) the daemon's store still has the fixture: {left:?}",
        cfg.shape
    );

    gate_passes(&cfg);

    // The fast path: `up` of the running sandbox returns at once, and still leaves the fixture
    // with no tag, whatever name a person or a test gave it: pulled by the registry's name,
    // by its Docker Hub name, and tagged under another name (the fixture's label says what it
    // is). Names pinned by digest (how swarm leaves it) are not tags and stay.
    for name in ["127.0.0.1:5000/library/redis:7-alpine", "redis:7-alpine"] {
        let (image, tag) = name.rsplit_once(':').expect("repo:tag");
        let pulled = block_on(async {
            use futures_util::StreamExt;
            let mut s = docker.create_image(
                Some(
                    bollard::query_parameters::CreateImageOptionsBuilder::default()
                        .from_image(image)
                        .tag(tag)
                        .build(),
                ),
                None,
                None,
            );
            while let Some(item) = s.next().await {
                item?;
            }
            Ok::<(), bollard::errors::Error>(())
        });
        pulled.unwrap_or_else(|e| panic!("pull {name}: {e}"));
    }
    block_on(
        docker.tag_image(
            "redis:7-alpine",
            Some(
                bollard::query_parameters::TagImageOptionsBuilder::default()
                    .repo("ci/app")
                    .tag("1")
                    .build(),
            ),
        ),
    )
    .expect("tag the fixture under another name");
    let (code, out) = run(verify(&cfg).args(["sandbox", "up"]));
    assert_eq!(code, Some(0), "`sandbox up` of the running sandbox: {out}");
    let images = block_on(
        docker.list_images(Some(
            bollard::query_parameters::ListImagesOptionsBuilder::default()
                .all(true)
                .build(),
        )),
    )
    .expect("list images");
    let tagged: Vec<String> = images
        .iter()
        .filter(|img| img.labels.contains_key("io.ccci.fixture"))
        .flat_map(|img| img.repo_tags.iter())
        .filter(|t| !t.contains('@') && t.as_str() != "<none>:<none>")
        .cloned()
        .collect();
    assert!(
        tagged.is_empty(),
        "after `sandbox up` of a running sandbox the fixture is still tagged: {tagged:?}"
    );
    gate_passes(&cfg);
}

/// Gate 2pc on the cold sandbox passes: every blocking check passes.
fn gate_passes(cfg: &SandboxConfig) {
    let (code, out) = run(verify(cfg).args(["gate", "2pc", "--format", "json"]));
    assert_eq!(
        code,
        Some(0),
        "the gate right after a cold up of {}: {out}",
        cfg.shape
    );
    let json = out
        .split("--- stdout\n")
        .nth(1)
        .and_then(|s| s.split("\n--- stderr").next())
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(json).expect("the JSON report");
    let checks = v["checks"].as_array().expect("checks");
    assert!(!checks.is_empty(), "{v}");
    for c in checks {
        let blocking = c["blocking"].as_bool().unwrap_or(true);
        assert!(
            c["verdict"] == "pass" || !blocking,
            "{} on a cold {} sandbox: {c}",
            c["id"],
            cfg.shape
        );
    }
}
