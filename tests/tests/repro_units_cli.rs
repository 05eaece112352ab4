//! `ccci-verify units --repo PATH [--rev REV] [--json]`: the DESIGN.md contract, on a
//! scratch repository holding the F2pc-1 story (bad revision, then the fix). No sandbox.

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::Path;

use ccci_tests::bins::verify_bin;
use ccci_tests::git::git;
fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(ccci_tests::workspace_root().join("fixtures/nix").join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A repo: commit `bad` declares docker-prune.*, HEAD (`main`) declares ci-docker-prune.*.
fn story() -> (tempfile::TempDir, String, String) {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = tmp.path();
    git(d, &["init", "-q", "-b", "main"]);
    let module = d.join("nix/modules/docker-prune.nix");
    std::fs::create_dir_all(module.parent().unwrap_or(d)).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&module, fixture("docker-prune-bad-rev.nix")).unwrap_or_else(|e| panic!("{e}"));
    git(d, &["add", "-A"]);
    git(d, &["commit", "-q", "-m", "bad"]);
    let bad = git(d, &["rev-parse", "HEAD"]);
    std::fs::write(&module, fixture("docker-prune-fixed.nix")).unwrap_or_else(|e| panic!("{e}"));
    git(d, &["commit", "-q", "-am", "fix"]);
    let fixed = git(d, &["rev-parse", "HEAD"]);
    (tmp, bad, fixed)
}

fn units_json(repo: &Path, rev: &str) -> serde_json::Value {
    let out = Command::new(verify_bin())
        .args(["units", "--json", "--rev", rev, "--repo"])
        .arg(repo)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn json_contract_at_each_revision() {
    let (tmp, bad, fixed) = story();
    let at_bad = units_json(tmp.path(), &bad);
    assert_eq!(at_bad["rev"], bad.as_str());
    insta::assert_json_snapshot!("units_bad_rev", at_bad, { ".rev" => "[sha]" });
    let at_head = units_json(tmp.path(), "HEAD");
    assert_eq!(at_head["rev"], fixed.as_str());
    insta::assert_json_snapshot!("units_fixed_rev", at_head, { ".rev" => "[sha]" });
    // a branch name and a short sha name the same commits
    assert_eq!(units_json(tmp.path(), "main"), at_head);
    assert_eq!(units_json(tmp.path(), &bad[..8]), at_bad);
}

#[test]
fn human_output_and_dirty_note() {
    let (tmp, _, fixed) = story();
    // An uncommitted edit: the answer is still git's, and stderr says the tree is dirty.
    let module = tmp.path().join("nix/modules/docker-prune.nix");
    std::fs::write(&module, b"{ ... }: { systemd.services.uncommitted = { }; }")
        .unwrap_or_else(|e| panic!("{e}"));
    Command::new(verify_bin())
        .args(["units", "--repo"])
        .arg(tmp.path())
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "units declared at {fixed}"
        )))
        .stdout(predicate::str::contains("ci-docker-prune.timer"))
        .stdout(predicate::str::contains("nix/modules/docker-prune.nix:"))
        .stdout(predicate::str::contains("uncommitted").not())
        .stderr(predicate::str::contains("uncommitted change"));
}

#[test]
fn bad_repo_or_revision_exits_2() {
    let (tmp, _, _) = story();
    Command::new(verify_bin())
        .args(["units", "--json", "--rev", "no-such-rev", "--repo"])
        .arg(tmp.path())
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("no-such-rev"));
    let empty = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    Command::new(verify_bin())
        .args(["units", "--json", "--repo"])
        .arg(empty.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a git repository"));
    // A Nix file that does not parse: named with its line.
    std::fs::write(tmp.path().join("broken.nix"), b"{\n  a = ;\n}\n")
        .unwrap_or_else(|e| panic!("{e}"));
    git(tmp.path(), &["add", "-A"]);
    git(tmp.path(), &["commit", "-q", "-m", "broken"]);
    Command::new(verify_bin())
        .args(["units", "--json", "--repo"])
        .arg(tmp.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("broken.nix:2:"));
}

/// A module in the shapes real configurations use, and the JSON each must give (derived
/// by hand from how NixOS merges the module, not from the reader).
#[test]
fn json_reports_user_initrd_override_and_reasons() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = tmp.path();
    git(d, &["init", "-q", "-b", "main"]);
    let module = r#"{ config, lib, helpers, ... }:
let mkFetcher = name: { startAt = "hourly"; script = "fetch ${name}"; };
in {
  systemd.services.fetch = helpers.mkFetcher "a";
  systemd.services.gated = { enable = config.x.on; script = "g"; };
  systemd.services.nginx.serviceConfig.LimitNOFILE = 4096;
  systemd.user.services.agent = { startAt = "daily"; };
  boot.initrd.systemd.services.unlock = { script = "u"; };
  containers.web.config.systemd.services.inner = { };
  systemd.services.local = mkFetcher "b";
}
"#;
    std::fs::write(d.join("host.nix"), module).unwrap_or_else(|e| panic!("{e}"));
    git(d, &["add", "-A"]);
    git(d, &["commit", "-q", "-m", "host"]);
    let v = units_json(d, "HEAD");
    let units: Vec<(String, bool, bool)> = v["units"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|u| {
                    (
                        u["name"].as_str().unwrap_or("?").to_string(),
                        u["conditional"] == true,
                        u["override"] == true,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        units,
        vec![
            ("fetch.service".to_string(), false, false),
            ("gated.service".to_string(), true, false),
            // mkFetcher is defined in the file: its startAt is read
            ("local.service".to_string(), false, false),
            ("local.timer".to_string(), false, false),
            ("nginx.service".to_string(), false, true),
        ]
    );
    let names = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|u| u["name"].as_str().unwrap_or("?").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(names("user_units"), ["agent.service", "agent.timer"]);
    assert_eq!(names("initrd_units"), ["unlock.service"]);
    let unresolved: Vec<(u64, String)> = v["unresolved"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|u| {
                    (
                        u["line"].as_u64().unwrap_or(0),
                        u["reason"].as_str().unwrap_or("?").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        unresolved,
        vec![
            (4, "function-result".to_string()),
            (9, "container-config".to_string())
        ]
    );
    // every unresolved entry keeps the fields it always had
    for u in v["unresolved"].as_array().into_iter().flatten() {
        assert!(u["file"].is_string() && u["text"].is_string(), "{u}");
    }
    Command::new(verify_bin())
        .args(["units", "--repo"])
        .arg(d)
        .assert()
        .success()
        .stdout(predicate::str::contains("override of a nixpkgs unit"))
        .stdout(predicate::str::contains("initrd units"))
        .stdout(predicate::str::contains("user units"))
        .stdout(predicate::str::contains("[function-result]"));
}
