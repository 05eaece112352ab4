//! The Nix package builds from a file set (`nix/package.nix`: the paths in
//! `nix/package-files.json` plus every workspace member). Build the two binaries from exactly
//! that set, git-tracked files only (as a flake's source is), in a scratch copy:
//! `cargo check --offline --locked -p ci-docker-prune -p ccci-verify`. It failed while the set
//! left out `verify/gates/`, which `verify/checks` embeds (issue 10 item 6a).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    ccci_tests::workspace_root()
}

/// The package's file set: `nix/package-files.json` and the workspace members.
fn file_set() -> Vec<String> {
    let r = root();
    let list = std::fs::read_to_string(r.join("nix/package-files.json"))
        .unwrap_or_else(|e| panic!("nix/package-files.json: {e}"));
    let mut paths: Vec<String> =
        serde_json::from_str(&list).unwrap_or_else(|e| panic!("nix/package-files.json: {e}"));
    let manifest: toml::Table = std::fs::read_to_string(r.join("Cargo.toml"))
        .unwrap_or_else(|e| panic!("Cargo.toml: {e}"))
        .parse()
        .unwrap_or_else(|e| panic!("Cargo.toml: {e}"));
    let members = manifest["workspace"]["members"]
        .as_array()
        .unwrap_or_else(|| panic!("workspace.members"));
    paths.extend(members.iter().filter_map(|m| m.as_str()).map(String::from));
    paths
}

fn in_set(set: &[String], rel: &str) -> bool {
    set.iter()
        .any(|p| rel == p || rel.starts_with(&format!("{}/", p.trim_end_matches('/'))))
}

/// Every file a crate embeds from outside its own folder (`include_str!`/`include_bytes!`) is
/// in the set: the cheap form of the build below, naming the file.
#[test]
fn every_embedded_file_is_in_the_package_file_set() {
    let set = file_set();
    let re = regex::Regex::new(r#"include_(?:str|bytes)!\(\s*"([^"]+)"\s*\)"#).unwrap();
    let files = Command::new("git")
        .arg("-C")
        .arg(root())
        .args(["ls-files", "--", "*.rs"])
        .output()
        .unwrap_or_else(|e| panic!("git ls-files: {e}"));
    // a refused git lists nothing: that is no file set checked
    assert!(
        files.status.success(),
        "git ls-files exited {}: {}",
        files.status,
        String::from_utf8_lossy(&files.stderr)
    );
    let mut missing = Vec::new();
    let mut embeds = 0;
    for f in String::from_utf8_lossy(&files.stdout).lines() {
        let text = match std::fs::read_to_string(root().join(f)) {
            Ok(t) => t,
            // deleted in the work tree
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{f}: {e}"),
        };
        for cap in re.captures_iter(&text) {
            embeds += 1;
            let target = Path::new(f).parent().unwrap_or(Path::new("")).join(&cap[1]);
            let mut parts: Vec<String> = Vec::new();
            for c in target.components() {
                match c {
                    std::path::Component::ParentDir => {
                        parts.pop();
                    }
                    std::path::Component::Normal(n) => parts.push(n.to_string_lossy().into()),
                    _ => {}
                }
            }
            let rel = parts.join("/");
            if !in_set(&set, &rel) {
                missing.push(format!("{f} embeds {rel}"));
            }
        }
    }
    // the crates embed files (the gate specs, the Nix evaluators): none found is nothing checked
    assert!(
        embeds > 0,
        "no include_str!/include_bytes! found in git's .rs files: the set was not checked"
    );
    assert!(
        missing.is_empty(),
        "files the crates embed but nix/package.nix leaves out of the source: {missing:#?}"
    );
}

#[test]
fn the_binaries_build_from_exactly_the_package_file_set() {
    let set = file_set();
    let out = Command::new("git")
        .arg("-C")
        .arg(root())
        .args(["ls-files", "-z", "--"])
        .args(&set)
        .output()
        .unwrap_or_else(|e| panic!("git ls-files: {e}"));
    assert!(out.status.success());
    let scratch = tempfile::tempdir().unwrap();
    let mut n = 0;
    for rel in out.stdout.split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let rel = String::from_utf8_lossy(rel).to_string();
        let from = root().join(&rel);
        if !from.is_file() {
            continue; // deleted in the work tree
        }
        let to = scratch.path().join(&rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("{rel}: {e}"));
        n += 1;
    }
    assert!(n > 50, "only {n} files in the set");
    // its own target dir (a build from another path shares no fingerprints with the
    // workspace's, and must not wait on its lock); kept between runs
    let target = root().join("target/package-fileset");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(scratch.path())
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "check",
            "--offline",
            "--locked",
            "--quiet",
            "-p",
            "ci-docker-prune",
            "-p",
            "ccci-verify",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cargo check: {e}"));
    assert!(
        out.status.success(),
        "cargo check on the package's file set failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
