//! Issue 17, item 3: space freed later. btrfs counts the extents a delete freed only at its
//! next transaction commit (every 30 s by default; here `commit=300`, so the test never races
//! one) and frees a deleted subvolume — a layer of Docker's `btrfs` storage driver — in a
//! background cleaner. Measured on this kernel: 200 MiB unlinked still showed as used for the
//! 5 s sampled, and were counted right after a `syncfs`. The eviction tier re-measures after
//! each removal: before, it saw nothing freed and went on, three removals deep ("eviction
//! stopped: the last 3 removals freed less than 1 MiB each"), where one was enough.
//!
//! A private dockerd (the system's engine) with its data-root on a btrfs loop device and a
//! registry of its own in its network namespace: four superseded cached pulls of 40 MiB each.

mod prune_common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use ccci_sandbox::images::ImageSpec;
use prune_common::swarm::Node;
use prune_common::*;

const MIB: u64 = 1 << 20;
/// Each evictable image's own layer.
const LAYER: u64 = 32 * MIB;

fn sh(argv: &[&str]) {
    let st = Command::new(argv[0])
        .args(&argv[1..])
        .status()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(st.success(), "{argv:?}: {st}");
}

/// A registry in the node's network namespace, at 127.0.0.1:5000; killed on drop.
struct Registry(Child);

impl Registry {
    fn start(node: &Node) -> Registry {
        let dir = node.dir("registry");
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:5000\n",
                dir.join("store").display()
            ),
        )
        .unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", node.name))
            .args(["--", "docker-registry", "serve"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("docker-registry: {e}"));
        Registry(child)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Load `spec` as `tag`, push it and pull it back by digest only (a cached pull); its id.
fn cached_pull(node: &Node, spec: ImageSpec, tag: &str) -> String {
    let id = node.load(&spec.tag(tag));
    // the registry may still be starting
    let pushed = wait_for(std::time::Duration::from_secs(20), || {
        node.docker(&["push", tag]).0
    });
    assert!(pushed, "push {tag}");
    let digest_ref = node.docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{index .RepoDigests 0}}",
        &id,
    ]);
    node.docker_ok(&["rmi", tag]);
    node.docker_ok(&["pull", &digest_ref]);
    id
}

fn used(p: &Path) -> ci_docker_prune::gates::DiskUsage {
    ci_docker_prune::gates::disk_usage(p).unwrap()
}

#[test]
fn the_tier_counts_space_a_filesystem_frees_after_the_delete() {
    let node = Node::start_with(None, |n| {
        let img = n.dir("btrfs.img");
        std::fs::create_dir_all(n.dir("")).unwrap();
        sh(&["truncate", "-s", "1G", &img.to_string_lossy()]);
        sh(&["mkfs.btrfs", "-q", &img.to_string_lossy()]);
        std::fs::create_dir_all(&n.data_root).unwrap();
        sh(&[
            "mount",
            "-o",
            "loop,commit=300",
            &img.to_string_lossy(),
            &n.data_root.to_string_lossy(),
        ]);
    });
    let driver = node.docker_ok(&["info", "--format", "{{.Driver}}"]);
    assert_eq!(driver, "btrfs", "precondition: the btrfs storage driver");
    let _registry = Registry::start(&node);
    // three superseded cached pulls, 32 MiB of their own each, oldest first in the queue
    let mut old = Vec::new();
    for i in 1..=3 {
        let repo = format!("127.0.0.1:5000/ccci-test/deferred{i}");
        let spec = ImageSpec::new(
            vec![noise_layer(&format!("old{i}"), LAYER as usize)],
            &format!("2020-01-0{i}T00:00:00Z"),
        );
        old.push(cached_pull(&node, spec, &format!("{repo}:1")));
        let new = ImageSpec::new(
            vec![noise_layer(&format!("new{i}"), 4096)],
            "2026-01-01T00:00:00Z",
        );
        // pulled too: a newer image the daemon got from the registry supersedes (a local
        // build supersedes nothing, issue 17 item 9)
        cached_pull(&node, new, &format!("{repo}:2"));
    }
    // everything written is counted; then the disk at a percentage where one eviction (32 MiB,
    // about 3 points of 1 GiB) reaches the low watermark and none does not
    Command::new("sync").status().unwrap();
    let ballast = node.data_root.join("ccci-ballast");
    let u = used(&node.data_root);
    let total = u.used + u.avail;
    let want = (total * 60 / 100).saturating_sub(u.used);
    std::fs::write(&ballast, noise("ballast", want as usize)).unwrap();
    Command::new("sync").status().unwrap();
    let before = used(&node.data_root);
    let threshold = before.percent();
    let low = threshold - 2;
    // how many 32 MiB layers must go to be at or below `low` (df's rounding up: strictly
    // below low + 1 points)
    let total = before.used + before.avail;
    let target = (u64::from(low) * total) / 100;
    let need = before.used.saturating_sub(target).div_ceil(LAYER);
    assert_eq!(need, 1, "precondition: one eviction is enough");
    let (t, l) = (threshold.to_string(), low.to_string());
    let run = prune_at(
        &node.socket(),
        &node.tagged_image_ids(),
        &[
            "--path",
            &node.data_root.to_string_lossy(),
            "--threshold",
            &t,
            "--evict-low-watermark",
            &l,
            "--until",
            "3000d",
            "--run-stack-pattern",
            NO_RUN_PATTERN,
            "--json",
        ],
        |_| {},
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    // (btrfs' cleaner frees the layers' subvolumes at its next commit, minutes away here)
    let removed = run.removed("images");
    assert_eq!(
        removed,
        old[..1].to_vec(),
        "one eviction was enough ({}%, low watermark {low}%):\n{}",
        before.percent(),
        run.stderr
    );
    assert!(old[1..]
        .iter()
        .all(|id| node.docker(&["image", "inspect", id]).0));
    assert!(
        run.stderr
            .contains("the removals freed that btrfs has not counted yet"),
        "the tier says it went by what the daemon freed:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("eviction done"),
        "the tier says it reached the watermark:\n{}",
        run.stderr
    );
}
