//! The workspace's binaries, for tests that run them as a user would.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Path of the `ccci-verify` binary: `CCCI_VERIFY_BIN`, else `<target>/debug/ccci-verify`
/// next to this test executable's directory, brought up to date first with
/// `cargo build -p ccci-verify --bin ccci-verify` (`cargo test` builds no binary of a package
/// without integration tests, and a stale one would test old code; cargo does not hold the
/// target-dir lock while tests run, so this is a no-op of a fraction of a second when
/// `cargo build --workspace --bins` ran before). Without cargo, an existing binary is used.
pub fn verify_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("CCCI_VERIFY_BIN").filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "CCCI_VERIFY_BIN={} is not a file", p.display());
            return p;
        }
        let mut candidates = Vec::new();
        if let Ok(exe) = std::env::current_exe() {
            // <target>/debug/deps/<test-bin> -> <target>/debug
            if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
                candidates.push(profile_dir.join("ccci-verify"));
            }
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::workspace_root().join("target"));
        candidates.push(target.join("debug/ccci-verify"));
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        match std::process::Command::new(&cargo)
            .args(["build", "-q", "-p", "ccci-verify", "--bin", "ccci-verify"])
            .current_dir(crate::workspace_root())
            .status()
        {
            Ok(status) => assert!(status.success(), "cargo build -p ccci-verify: {status}"),
            Err(e) => eprintln!(
                "cannot run {} to build ccci-verify ({e}); using the binary in the target dir",
                cargo.to_string_lossy()
            ),
        }
        candidates
            .into_iter()
            .find(|p| p.is_file())
            .unwrap_or_else(|| {
                panic!(
                    "no ccci-verify binary in the target dir: run `cargo build --workspace --bins`"
                )
            })
    })
    .clone()
}
