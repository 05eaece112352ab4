//! Typed errors of the sandbox.

use std::path::PathBuf;

/// Everything that can go wrong while bringing the sandbox up, using it or tearing it down.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The sandbox needs root (network namespaces, loop mounts, cgroups).
    #[error("the sandbox needs root (network namespaces, loop mounts); run as root")]
    NotRoot,
    /// A host program is missing; `package` is the Debian package that ships it.
    #[error("missing prerequisite `{program}`: install it with `apt-get install {package}`")]
    MissingPrerequisite {
        /// Program that was looked for.
        program: String,
        /// Debian package that ships it.
        package: String,
    },
    /// A host command (ip, mount, mkfs, debootstrap, ...) failed.
    #[error("step `{step}` failed: `{command}` exited with {status}: {output}")]
    Command {
        /// Which start/stop step ran the command.
        step: String,
        /// The argv, joined with spaces for display.
        command: String,
        /// Exit status as text.
        status: String,
        /// Tail of stdout+stderr.
        output: String,
    },
    /// A daemon process did not come up (or died); `log_tail` is the end of its log.
    #[error("step `{step}` failed: {reason}\n--- last lines of {log} ---\n{log_tail}")]
    StartFailed {
        /// Which start step failed (registry, dockerd, swarm, systemd-host, ...).
        step: String,
        /// What happened.
        reason: String,
        /// Path of the log that was tailed.
        log: PathBuf,
        /// The last lines of that log.
        log_tail: String,
    },
    /// A Docker engine could not be fetched from Debian's archive.
    #[error("cannot fetch the engine: {what}: {reason}")]
    EngineFetch {
        /// The packages, versions, suite and mirror that were asked for.
        what: String,
        /// What apt said.
        reason: String,
    },
    /// The sandbox host cannot be made a gate target.
    #[error("the sandbox host as a target: {0}")]
    Target(String),
    /// A Docker API call failed.
    #[error("step `{step}`: Docker API error: {source}")]
    Docker {
        /// Which step made the call.
        step: String,
        /// The bollard error.
        #[source]
        source: bollard::errors::Error,
    },
    /// Filesystem or process I/O failed.
    #[error("step `{step}`: {path}: {source}")]
    Io {
        /// Which step did the I/O.
        step: String,
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The systemd host container did not reach `running`/`degraded`.
    #[error(
        "systemd host `{container}` is not running: state `{state}`; failed units: {failed_units}\n--- last lines of the container's console ---\n{console_tail}"
    )]
    HostNotRunning {
        /// The host container's name.
        container: String,
        /// Last output of `systemctl is-system-running`.
        state: String,
        /// `systemctl --failed` output.
        failed_units: String,
        /// The end of the container's log (systemd's console output).
        console_tail: String,
    },
    /// A command run inside the systemd host failed during deploy.
    #[error("deploy into `{container}`: `{command}` exited with {exit}: {output}")]
    Deploy {
        /// The host container's name.
        container: String,
        /// The argv, joined with spaces.
        command: String,
        /// Exit code.
        exit: i64,
        /// Its output.
        output: String,
    },
    /// An image recipe is invalid (e.g. a file of a layer cannot be read).
    #[error("image builder: {0}")]
    Image(String),
    /// Invalid configuration (bad name, size, path).
    #[error("invalid sandbox configuration: {0}")]
    Config(String),
    /// Something left behind could not be removed.
    #[error("teardown incomplete: {0}")]
    Teardown(String),
    /// `CCCI_PRUNE_BIN` names something that is not a file.
    #[error("CCCI_PRUNE_BIN={} is not a file", .0.display())]
    PruneBinNotAFile(PathBuf),
    /// The repository has no `nix/` tree to deploy as the host's source.
    #[error("{} has no nix/ tree to deploy as the host's source: run from the repository or pass --repo", .0.display())]
    NoSourceTree(PathBuf),
    /// The repository's `nix/` tree could not be read.
    #[error("reading {}/nix: {source}", .repo.display())]
    SourceTree {
        /// The repository.
        repo: PathBuf,
        /// What went wrong.
        source: Box<SandboxError>,
    },
}

/// Which step of [`crate::up_and_deploy`] failed.
#[derive(Debug, thiserror::Error)]
pub enum UpAndDeployError {
    /// Bringing the sandbox up failed.
    #[error("sandbox up: {0}")]
    Up(#[source] SandboxError),
    /// Installing the deploy into the systemd host failed.
    #[error("sandbox deploy: {0}")]
    Deploy(#[source] SandboxError),
}

impl SandboxError {
    pub(crate) fn io(step: &str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SandboxError::Io {
            step: step.to_string(),
            path: path.into(),
            source,
        }
    }
    pub(crate) fn docker(step: &str, source: bollard::errors::Error) -> Self {
        SandboxError::Docker {
            step: step.to_string(),
            source,
        }
    }
}

/// Shorthand result.
pub type Result<T, E = SandboxError> = std::result::Result<T, E>;
