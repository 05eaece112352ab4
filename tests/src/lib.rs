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
pub mod schema;

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
    let find =
        || ccci_sandbox::find_prune_bin(candidates.iter().cloned()).map_err(|e| e.to_string());
    if let Some(p) = find()? {
        return Ok(p);
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
    find()?.ok_or_else(|| "ci-docker-prune was built but not found in the target dir".to_string())
}

/// What the tests deploy into the systemd host: what `ccci-verify sandbox up` deploys for this
/// repository (the prune binary, the portable units, the repo's `nix/` tree and the sandbox's
/// Docker client config).
pub fn default_deploy() -> Result<ccci_sandbox::Deploy, String> {
    ccci_sandbox::Deploy::for_repo(&workspace_root(), prune_bin()?).map_err(|e| e.to_string())
}

/// The shared sandbox, up and deployed. Panics with the reason if it cannot start: that is a
/// test failure with its cause, not a skip. The first failure is remembered, so the other tests
/// of the process fail at once with the same reason instead of each trying again.
pub fn sandbox() -> &'static SandboxInfo {
    static INFO: OnceLock<Result<SandboxInfo, String>> = OnceLock::new();
    let res = INFO.get_or_init(|| {
        let mut cfg = SandboxConfig::from_env();
        cfg.deploy = default_deploy().map_err(|e| format!("sandbox deploy set-up: {e}"))?;
        block_on(ccci_sandbox::up_and_deploy(&cfg)).map_err(|e| match e {
            ccci_sandbox::UpAndDeployError::Up(e) => format!("sandbox up failed: {e}"),
            ccci_sandbox::UpAndDeployError::Deploy(e) => format!("sandbox deploy failed: {e}"),
        })
    });
    match res {
        Ok(info) => info,
        Err(e) => panic!("{e}"),
    }
}
