//! `--target` resolution: sandbox (brought up when it is not running), local, ssh, docker.

use crate::CliError;
use anyhow::anyhow;
use ccci_host::{Target, TargetSpec};
use std::path::{Path, PathBuf};

/// The portable units, built into the binary so the sandbox gets what this build ships.
pub const UNITS: &[(&str, &str)] = &[
    (
        "ci-docker-prune.service",
        include_str!("../../../prune/systemd/ci-docker-prune.service"),
    ),
    (
        "ci-docker-prune.timer",
        include_str!("../../../prune/systemd/ci-docker-prune.timer"),
    ),
];

/// The `ci-docker-prune` binary to install in the sandbox: `CCCI_PRUNE_BIN`, else the one
/// next to this executable (cargo and packages install them side by side), else on PATH.
pub fn prune_bin() -> Result<PathBuf, CliError> {
    if let Some(p) = std::env::var_os("CCCI_PRUNE_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(CliError::Usage(anyhow!(
                "CCCI_PRUNE_BIN={} is not a file",
                p.display()
            )))
        };
    }
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
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        CliError::Usage(anyhow!(
            "cannot find the ci-docker-prune binary to deploy into the sandbox: build it (cargo build --workspace) or set CCCI_PRUNE_BIN"
        ))
    })
}

/// What `sandbox up` installs in the sandbox's systemd host: the prune binary, the portable
/// units, the repository's `nix/` tree as the deployed source tree, and a sandbox credential.
pub fn sandbox_deploy(repo: &Path) -> Result<ccci_sandbox::Deploy, CliError> {
    let source_tree = ccci_sandbox::Deploy::tree_from_dir(repo, "nix")
        .map_err(|e| CliError::Usage(anyhow!("reading {}/nix: {e}", repo.display())))?;
    if source_tree.is_empty() {
        return Err(CliError::Usage(anyhow!(
            "{} has no nix/ tree to deploy as the host's source: run from the repository or pass --repo",
            repo.display()
        )));
    }
    Ok(ccci_sandbox::Deploy {
        prune_bin: Some(prune_bin()?),
        units: UNITS
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect(),
        source_tree,
        docker_config: Some(ccci_sandbox::Deploy::sandbox_docker_config()),
        ..Default::default()
    })
}

/// Bring the sandbox up and deploy into it.
pub async fn sandbox_up(repo: &Path) -> Result<ccci_sandbox::SandboxInfo, CliError> {
    let mut cfg = ccci_sandbox::SandboxConfig::from_env();
    cfg.deploy = sandbox_deploy(repo)?;
    let info = ccci_sandbox::up(&cfg)
        .await
        .map_err(|e| CliError::Unreachable(anyhow!("sandbox up: {e}")))?;
    ccci_sandbox::deploy(&info, &cfg.deploy)
        .await
        .map_err(|e| CliError::Unreachable(anyhow!("sandbox deploy: {e}")))?;
    Ok(info)
}

/// A target for `--target`. The sandbox is reused as it is when it runs (so a reviewer sees
/// its real state), and brought up and deployed when it does not.
pub async fn resolve(
    spec: &TargetSpec,
    repo: &Path,
) -> Result<(Target, Option<ccci_sandbox::SandboxInfo>), CliError> {
    let target = match spec {
        TargetSpec::Sandbox => {
            let cfg = ccci_sandbox::SandboxConfig::from_env();
            let info = match ccci_sandbox::status(&cfg).await {
                Ok(Some(info)) => info,
                Ok(None) => {
                    eprintln!("ccci-verify: the sandbox is not running; bringing it up (see docs/sandbox.md)");
                    sandbox_up(repo).await?
                }
                Err(e) => return Err(CliError::Unreachable(anyhow!("sandbox status: {e}"))),
            };
            let t = Target::docker_exec(
                spec.clone(),
                &info.docker_host,
                &info.host_container,
                "sandbox",
            )
            .map_err(|e| CliError::Unreachable(anyhow!("{e}")))?;
            return Ok((t, Some(info)));
        }
        TargetSpec::Local => Target::local(),
        TargetSpec::Ssh { user, host, port } => Target::ssh(user.clone(), host.clone(), *port)
            .await
            .map_err(|e| match e {
                // CCCI_SSH_OPTS or CCCI_SSH_DOCKER_SOCKET malformed: a usage error
                ccci_host::HostError::BadTarget(..) => CliError::Usage(anyhow!("{e}")),
                _ => CliError::Unreachable(anyhow!("{e}")),
            })?,
        TargetSpec::Docker { name } => {
            let host = ccci_host::target::local_docker_host();
            Target::docker_exec(spec.clone(), &host, name, &format!("docker://{name}"))
                .map_err(|e| CliError::Unreachable(anyhow!("{e}")))?
        }
    };
    Ok((target, None))
}
