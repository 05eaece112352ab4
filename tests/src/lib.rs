//! Shared helpers for the end-to-end tests: the sandbox every test runs against.
//!
//! [`sandbox()`] brings the default sandbox (`ccci`, or `CCCI_SANDBOX_NAME`) up on first use in
//! a process and deploys the prune binary, the portable units and the repo's `nix/` tree into its
//! systemd host. `up` is serialised by a file lock, so several test binaries running at once share
//! one sandbox instead of starting several. Tests that change sandbox state (services, images,
//! ballast, units) must carry `#[serial_test::file_serial(sandbox)]`.
//!
//! The prune binary is taken from `CCCI_PRUNE_BIN`, else `<target>/debug/ci-docker-prune` next to
//! the test executable (`cargo test --workspace` builds it), else it is built once with
//! `cargo build -p ci-docker-prune --bin ci-docker-prune`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use ccci_sandbox::{self, SandboxConfig, SandboxInfo};

pub mod bins;
pub mod gate;
pub mod git;
pub mod proxy;

/// Root of the workspace (parent of `tests/`).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// A dedicated runtime for sandbox bring-up, independent of any test's own runtime.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot build the sandbox tokio runtime: {e}"))
    })
}

/// Run a future on the sandbox runtime from synchronous code (also usable from tests that are
/// not `#[tokio::test]`).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// Path of the `ci-docker-prune` binary to deploy, building it once if needed.
pub fn prune_bin() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("CCCI_PRUNE_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("CCCI_PRUNE_BIN={} is not a file", p.display()))
        };
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // <target>/debug/deps/<test-bin> -> <target>/debug
        if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
            candidates.push(profile_dir.join("ci-docker-prune"));
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    candidates.push(target.join("debug/ci-docker-prune"));
    if let Some(p) = candidates.iter().find(|p| p.is_file()) {
        return Ok(p.clone());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "-p", "ci-docker-prune", "--bin", "ci-docker-prune"])
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("cannot run cargo build for ci-docker-prune: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build -p ci-docker-prune failed: {status}"));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| "ci-docker-prune was built but not found in the target dir".to_string())
}

/// What the tests deploy into the systemd host: the prune binary, whatever units exist under
/// `prune/systemd/`, the repo's `nix/` tree and the sandbox's Docker client config.
pub fn default_deploy() -> Result<ccci_sandbox::Deploy, String> {
    let root = workspace_root();
    let units = ccci_sandbox::Deploy::units_from_dir(&root.join("prune/systemd"))
        .map_err(|e| e.to_string())?;
    let source_tree =
        ccci_sandbox::Deploy::tree_from_dir(&root, "nix").map_err(|e| e.to_string())?;
    Ok(ccci_sandbox::Deploy {
        prune_bin: Some(prune_bin()?),
        units,
        source_tree,
        docker_config: Some(ccci_sandbox::Deploy::sandbox_docker_config()),
        ..Default::default()
    })
}

/// The shared sandbox, up and deployed. Panics with the reason if it cannot start: that is a
/// test failure with its cause, not a skip. The first failure is remembered, so the other tests
/// of the process fail at once with the same reason instead of each trying again.
pub fn sandbox() -> &'static SandboxInfo {
    static INFO: OnceLock<Result<SandboxInfo, String>> = OnceLock::new();
    let res = INFO.get_or_init(|| {
        let mut cfg = SandboxConfig::from_env();
        cfg.deploy = default_deploy().map_err(|e| format!("sandbox deploy set-up: {e}"))?;
        block_on(async {
            let info = ccci_sandbox::up(&cfg)
                .await
                .map_err(|e| format!("sandbox up failed: {e}"))?;
            ccci_sandbox::deploy(&info, &cfg.deploy)
                .await
                .map_err(|e| format!("sandbox deploy failed: {e}"))?;
            Ok(info)
        })
    });
    match res {
        Ok(info) => info,
        Err(e) => panic!("{e}"),
    }
}
