//! `up`, `down`, `status`.
use crate::error::{Result, SandboxError};
use crate::{SandboxConfig, SandboxInfo};

/// Bring the sandbox up (idempotent; recovers a dead one).
pub async fn up(cfg: &SandboxConfig) -> Result<SandboxInfo> {
    cfg.validate()?;
    Err(SandboxError::Config("up: not implemented yet".into()))
}

/// Tear the sandbox down; keeps caches and registry storage.
pub async fn down(cfg: &SandboxConfig) -> Result<()> {
    down_with(cfg, false).await
}

/// Tear down; with `purge` also delete the state dir (registry storage, logs).
pub async fn down_with(cfg: &SandboxConfig, _purge: bool) -> Result<()> {
    cfg.validate()?;
    Err(SandboxError::Config("down: not implemented yet".into()))
}

/// The running sandbox, or `None` when it is not (fully) up.
pub async fn status(cfg: &SandboxConfig) -> Result<Option<SandboxInfo>> {
    cfg.validate()?;
    Ok(None)
}
