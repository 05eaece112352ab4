//! Targets: a host to verify, reached through a command transport (local, ssh, docker exec)
//! plus a Docker endpoint; the systemd unit model parsed from `systemctl show`; file reads and
//! hashes.
//!
//! Commands are argv everywhere; the only place argv becomes one string is the ssh transport,
//! which quotes each word once for the remote shell.

pub mod docker_error;
pub mod systemd;
pub mod target;
pub mod transport;

pub use systemd::{
    parse_exec_lines, parse_show, ExecLine, UnitState, EXEC_PROPERTIES, PULLED_IN_PROPERTIES,
    SHOW_PROPERTIES,
};
pub use target::{Target, TargetSpec};
pub use transport::{CmdOutput, Transport};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum HostError {
    #[error("invalid target `{0}`: {1}")]
    BadTarget(String, String),
    #[error("target {target} unreachable: {reason}")]
    Unreachable { target: String, reason: String },
    #[error("cannot run `{command}` on {target}: {reason}")]
    Exec {
        target: String,
        command: String,
        reason: String,
    },
    #[error("Docker endpoint {endpoint} of {target}: {reason}")]
    Docker {
        target: String,
        endpoint: String,
        reason: String,
    },
    #[error("cannot parse `systemctl show` output: {0}")]
    Parse(String),
}

impl HostError {
    /// True when the error means the target itself cannot be reached (exit 3 of the contract).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, HostError::Unreachable { .. })
    }
}

/// Hex sha256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}
