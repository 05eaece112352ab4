//! The systemd host container: rootfs cache, container, deploy.
use crate::error::{Result, SandboxError};
use crate::{Deploy, SandboxInfo};

/// Run argv in the systemd host container; returns (exit code, combined output).
pub async fn exec_in_host(info: &SandboxInfo, argv: &[&str]) -> Result<(i64, String)> {
    let _ = (info, argv);
    Err(SandboxError::Config("exec_in_host: not implemented yet".into()))
}

pub(crate) async fn deploy(info: &SandboxInfo, d: &Deploy) -> Result<()> {
    let _ = (info, d);
    Err(SandboxError::Config("deploy: not implemented yet".into()))
}
