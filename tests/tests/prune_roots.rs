//! Issue 17, item 7: the daemon's roots remembered in the state directory go stale when the
//! daemon switches to the containerd image store or moves its data-root; a run below the
//! threshold must notice it without asking the daemon, ask it again, and measure where the
//! data is now. Before: the remembered `{"store":"legacy"}` meant containerd's root (and the
//! data-root) were never measured while they filled, and a remembered root that vanished was
//! dropped without a word.
//!
//! A private dockerd of Debian sid's engine (the one the sid sandbox runs, from the sandbox
//! cache), its data-root on a 64 MiB tmpfs, `--path` a small tmpfs of its own that stays
//! nearly empty: what the gate decides can only come from the roots it measures.

mod prune_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use ci_docker_prune::roots::{self, ImageStore};
use prune_common::swarm::Node;
use prune_common::*;

/// Debian sid's docker.io and containerd, from the sandbox cache (fetched there if missing).
fn sid_engine() -> ccci_sandbox::engine::EngineBins {
    let cfg = ccci_sandbox::SandboxConfig::from_env();
    let mirror = std::env::var("CCCI_SANDBOX_MIRROR")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "http://deb.debian.org/debian".to_string());
    ccci_sandbox::engine::ensure(&ccci_sandbox::Engine::Sid, &cfg.cache_dir, &mirror)
        .unwrap_or_else(|e| panic!("sid engine: {e}"))
}

/// The image store the daemon reports (`docker info`), not the prune's reading of it.
fn daemon_store(node: &Node) -> ImageStore {
    let status = node.docker_ok(&["info", "--format", "{{json .DriverStatus}}"]);
    if status.contains("io.containerd.snapshotter") {
        ImageStore::Containerd
    } else {
        ImageStore::Legacy
    }
}

/// A file that pushes the filesystem of `dir` to at least `pct` percent.
fn fill(dir: &Path, pct: u64) -> PathBuf {
    let u = ci_docker_prune::gates::disk_usage(dir).unwrap();
    let total = u.used + u.avail;
    let want = (total * pct / 100).saturating_sub(u.used) + (1 << 20);
    let f = dir.join("ccci-ballast");
    std::fs::write(&f, vec![0u8; want as usize]).unwrap();
    f
}

fn run(node: &Node, path: &Path, state: &Path) -> Run {
    prune_at_with_env(
        &node.socket(),
        &node.tagged_image_ids(),
        &[
            "--path",
            &path.to_string_lossy(),
            "--threshold",
            "50",
            "--until",
            "3000d",
            "--no-evict",
            "--run-stack-pattern",
            NO_RUN_PATTERN,
            "--json",
        ],
        |_| {},
        &[("STATE_DIRECTORY", state.as_os_str())],
    )
}

fn disk_gate(run: &Run) -> (bool, String) {
    let j = run.json();
    let g = &j["gates"][0];
    assert_eq!(g["gate"], "disk", "{j}");
    (
        g["pass"].as_bool().unwrap_or(false),
        g["detail"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn stale_remembered_roots_are_refreshed_without_the_daemon_below_the_threshold() {
    let mut node = Node::start_with(Some(sid_engine()), |n| n.mount_tmpfs(&n.data_root, "64m"));
    // `--path`: a tmpfs of its own, nearly empty (far below the threshold, 50 %)
    let path = node.dir("path");
    node.mount_tmpfs(&path, "4m");
    let state = tempfile::tempdir().unwrap();
    assert_eq!(daemon_store(&node), ImageStore::Legacy, "precondition");

    // 1. the legacy store: the first run learns the roots (one contact) and remembers them
    let r = run(&node, &path, state.path());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["skipped_by"], "disk", "{}", r.stdout);
    let remembered = roots::load(state.path()).expect("roots remembered");
    assert_eq!(remembered.store, ImageStore::Legacy, "{remembered:?}");
    assert_eq!(remembered.docker_root, node.data_root);

    // 2. the operator switches the daemon to the containerd image store (Docker 29's default)
    node.set_config(serde_json::json!({ "features": { "containerd-snapshotter": true } }));
    node.restart();
    assert_eq!(daemon_store(&node), ImageStore::Containerd, "precondition");
    // … and its data-root fills; `--path` stays nearly empty
    let ballast = fill(&node.data_root, 70);
    let r = run(&node, &path, state.path());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (pass, detail) = disk_gate(&r);
    assert!(
        pass,
        "the disk gate measured the stale roots only: {detail}\n{}",
        r.stderr
    );
    assert!(
        detail.contains(&format!("{} at ", node.data_root.display()))
            && detail.contains("containerd image store"),
        "the gate names what it measured: {detail}"
    );
    assert!(
        r.stderr
            .contains("the remembered daemon roots may be stale (the daemon started again"),
        "{}",
        r.stderr
    );
    assert_eq!(r.json()["outcome"], "pruned", "{}", r.stdout);
    let remembered = roots::load(state.path()).expect("roots remembered");
    assert_eq!(remembered.store, ImageStore::Containerd, "{remembered:?}");

    // 3. fresh roots: below the threshold again, no request to the daemon, roots measured
    std::fs::remove_file(&ballast).unwrap();
    let r = run(&node, &path, state.path());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.requests.is_empty(), "{:?}\n{}", r.requests, r.stderr);
    let (pass, detail) = disk_gate(&r);
    assert!(!pass, "{detail}");
    assert!(
        detail.contains(&format!("{} at ", node.data_root.display())),
        "{detail}"
    );

    // 4. the data-root moves to another filesystem; the old one is gone
    let old = node.data_root.clone();
    node.data_root = node.dir("moved");
    node.mount_tmpfs(&node.data_root.clone(), "64m");
    node.restart();
    let st = Command::new("umount").arg(&old).status().unwrap();
    assert!(st.success(), "umount {}", old.display());
    std::fs::remove_dir(&old).unwrap();
    fill(&node.data_root, 70);
    let r = run(&node, &path, state.path());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (pass, detail) = disk_gate(&r);
    assert!(
        pass,
        "the moved data-root was not measured: {detail}\n{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "the remembered daemon roots may be stale (remembered root {} is gone)",
            old.display()
        )),
        "{}",
        r.stderr
    );
    assert!(
        detail.contains(&format!("{} at ", node.data_root.display())),
        "{detail}"
    );
}
