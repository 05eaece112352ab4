//! The source fingerprint `ci-docker-prune --version` prints (docs/checks.md,
//! `repro.program-git-eq-host`): sha256 over the files the binary is built from, so a verifier
//! can tell a build of git's source at REV from a build of anything else without a
//! reproducible build. The set, as repository-relative paths: `Cargo.toml`, `Cargo.lock`,
//! `prune/Cargo.toml`, `prune/build.rs` and every file under `prune/src/`. The fingerprint is
//! the sha256 of the set's manifest as `sha256sum` prints it, files sorted by path (bytes):
//! one line `<sha256 of the content>  <path>\n` per file; so anyone can recompute it from a
//! checkout with coreutils (docs/checks.md).
//!
//! The same fingerprint is computed by the verifier from git's objects at REV
//! (`verify/checks/src/repro/program.rs`) and by the Nix build (this script runs there too,
//! over the source `nix/package.nix` takes). Only regular files count; a symlink or anything
//! else under `prune/src/` fails the build (git would store it as a link, the build would read
//! its target).

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The single files of the set (repository-relative); with every file below [`SRC_DIR`].
const FILES: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "prune/Cargo.toml",
    "prune/build.rs",
];
const SRC_DIR: &str = "prune/src";

fn walk(root: &Path, rel: &str, out: &mut Vec<String>) {
    let dir = root.join(rel);
    let rd = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("source fingerprint: cannot read {}: {e}", dir.display()));
    for entry in rd {
        let entry = entry.unwrap_or_else(|e| panic!("source fingerprint: {}: {e}", dir.display()));
        let name = entry.file_name().into_string().unwrap_or_else(|n| {
            panic!("source fingerprint: a file name that is not UTF-8 in {rel}: {n:?}")
        });
        let path = format!("{rel}/{name}");
        let ft = entry
            .file_type()
            .unwrap_or_else(|e| panic!("source fingerprint: {path}: {e}"));
        if ft.is_dir() {
            walk(root, &path, out);
        } else if ft.is_file() {
            out.push(path);
        } else {
            panic!("source fingerprint: {path} is neither a file nor a directory");
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest
        .parent()
        .expect("the prune crate sits in the workspace root")
        .to_path_buf();
    let mut files: Vec<String> = FILES.iter().map(|s| s.to_string()).collect();
    walk(&root, SRC_DIR, &mut files);
    files.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let hex = |d: &[u8]| -> String { d.iter().map(|b| format!("{b:02x}")).collect() };
    // the manifest: one `sha256sum` line per file
    let mut manifest = String::new();
    for f in &files {
        let data = std::fs::read(root.join(f))
            .unwrap_or_else(|e| panic!("source fingerprint: cannot read {f}: {e}"));
        manifest.push_str(&format!("{}  {f}\n", hex(&Sha256::digest(&data))));
    }
    let hex = hex(&Sha256::digest(manifest.as_bytes()));
    println!("cargo:rustc-env=CCCI_PRUNE_SOURCE=sha256:{hex}");
    for f in FILES {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    // a directory: cargo rescans every file below it
    println!("cargo:rerun-if-changed={}", root.join(SRC_DIR).display());
}
