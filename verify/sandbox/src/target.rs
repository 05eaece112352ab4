//! The sandbox as a gate target: its systemd host reached by `docker exec` over the sandbox
//! daemon's socket, and the daemon's data-root as the Docker root the gate expects (it is a
//! loop mount under the run dir, wherever the sandbox's name puts it).

use crate::{Result, SandboxError, SandboxInfo};
use ccci_checks::gate::GateTarget;
use ccci_host::{Target, TargetSpec};

/// The sandbox host as a [`GateTarget`]. Used by `ccci-verify gate --target sandbox` and by the
/// tests, so both run the gate against the same thing.
pub fn gate_target(info: &SandboxInfo) -> Result<GateTarget> {
    let target = Target::docker_exec(
        TargetSpec::Sandbox,
        &info.docker_host,
        &info.host_container,
        "sandbox",
    )
    .map_err(|e| SandboxError::Target(e.to_string()))?;
    Ok(GateTarget {
        target,
        docker_root: Some(info.data_root.display().to_string()),
    })
}
