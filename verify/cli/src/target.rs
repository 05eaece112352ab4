//! `--target` resolution: sandbox (brought up when it is not running), local, ssh, docker.

use crate::CliError;
use anyhow::anyhow;
use ccci_checks::gate::GateTarget;
use ccci_host::{Target, TargetSpec};
use std::path::{Path, PathBuf};

/// The `ci-docker-prune` binary to install in the sandbox: `CCCI_PRUNE_BIN`, else the one
/// next to this executable (cargo and packages install them side by side), else on PATH.
pub fn prune_bin() -> Result<PathBuf, CliError> {
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join("ci-docker-prune"));
            if let Some(up) = dir.parent() {
                candidates.push(up.join("ci-docker-prune"));
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("ci-docker-prune")));
    }
    ccci_sandbox::find_prune_bin(candidates)
        .map_err(|e| CliError::Usage(anyhow!("{e}")))?
        .ok_or_else(|| {
            CliError::Usage(anyhow!(
                "cannot find the ci-docker-prune binary to deploy into the sandbox: build it (cargo build --workspace) or set CCCI_PRUNE_BIN"
            ))
        })
}

/// What `sandbox up` installs in the sandbox's systemd host: the prune binary, the portable
/// units, the repository's `nix/` tree as the deployed source tree, and a sandbox credential.
pub fn sandbox_deploy(repo: &Path) -> Result<ccci_sandbox::Deploy, CliError> {
    // A repository without a nix/ tree is reported before a missing binary, as it always was.
    let bin = prune_bin();
    let deploy = ccci_sandbox::Deploy::for_repo(repo, bin.as_ref().cloned().unwrap_or_default())
        .map_err(|e| CliError::Usage(anyhow!("{e}")))?;
    bin.map(|_| deploy)
}

/// The sandbox's configuration: the shape from `shape` (flags) where given, else from
/// `CCCI_SANDBOX_FLAVOUR`/`_ENGINE`/`_IMAGE_STORE`; a variable that names nothing is exit 2.
pub fn sandbox_config(
    shape: Option<ccci_sandbox::Shape>,
) -> Result<ccci_sandbox::SandboxConfig, CliError> {
    match shape {
        Some(s) => Ok(ccci_sandbox::SandboxConfig::from_env_with(s)),
        None => {
            ccci_sandbox::SandboxConfig::try_from_env().map_err(|e| CliError::Usage(anyhow!("{e}")))
        }
    }
}

/// Bring the sandbox `cfg` up and deploy into it.
pub async fn sandbox_up(
    repo: &Path,
    mut cfg: ccci_sandbox::SandboxConfig,
) -> Result<ccci_sandbox::SandboxInfo, CliError> {
    cfg.deploy = sandbox_deploy(repo)?;
    ccci_sandbox::up_and_deploy(&cfg)
        .await
        .map_err(|e| CliError::Unreachable(anyhow!("{e}")))
}

/// A target for `--target`. The sandbox is reused as it is when it runs (so a reviewer sees
/// its real state), and brought up and deployed when it does not.
pub async fn resolve(spec: &TargetSpec, repo: &Path) -> Result<GateTarget, CliError> {
    if let TargetSpec::Sandbox = spec {
        let cfg = sandbox_config(None)?;
        let info = match ccci_sandbox::status(&cfg).await {
            Ok(Some(info)) => info,
            Ok(None) => {
                eprintln!(
                    "ccci-verify: the sandbox {} ({}) is not running; bringing it up (see docs/sandbox.md)",
                    cfg.name, cfg.shape
                );
                sandbox_up(repo, cfg).await?
            }
            Err(e) => return Err(CliError::Unreachable(anyhow!("sandbox status: {e}"))),
        };
        return ccci_sandbox::gate_target(&info).map_err(|e| CliError::Unreachable(anyhow!("{e}")));
    }
    Target::connect(spec)
        .await
        .map(GateTarget::from)
        .map_err(|e| match e {
            // CCCI_SSH_OPTS or CCCI_SSH_DOCKER_SOCKET malformed: a usage error
            ccci_host::HostError::BadTarget(..) => CliError::Usage(anyhow!("{e}")),
            _ => CliError::Unreachable(anyhow!("{e}")),
        })
}
