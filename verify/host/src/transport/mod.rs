//! Command transports: one file each.

mod docker_exec;
mod local;
mod ssh;

pub use docker_exec::DockerExec;
pub use local::Local;
pub use ssh::{Ssh, SshForward};

use crate::HostError;
use async_trait::async_trait;

/// What a command returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdOutput {
    /// Exit status; -1 when the process was killed by a signal.
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl CmdOutput {
    pub fn ok(&self) -> bool {
        self.status == 0
    }
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// stdout, then stderr if any, for evidence.
    pub fn combined(&self) -> String {
        let mut s = self.stdout_str();
        let e = self.stderr_str();
        if !e.trim().is_empty() {
            if !s.is_empty() && !s.ends_with('\n') {
                s.push('\n');
            }
            s.push_str(&e);
        }
        s
    }
}

/// Runs argv on a host.
#[async_trait]
pub trait Transport: Send + Sync {
    /// How the target is named in reports, e.g. `local`, `ssh://root@cc-ci`.
    fn describe(&self) -> String;
    /// Run argv (no shell) and collect its output. An error means the command could not be
    /// run at all (not a non-zero exit).
    async fn exec(&self, argv: &[String]) -> Result<CmdOutput, HostError>;
}

/// argv joined for display (each word quoted when it needs it).
pub fn display_argv(argv: &[String]) -> String {
    shell_words::join(argv)
}
