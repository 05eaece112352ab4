//! The sandbox: the embedded default target every test and the gate run against.
//!
//! Real components only: a private `docker-registry` and a private `dockerd` (swarm mode) in
//! their own network namespace, the daemon's data-root on a loop-mounted ext4 image, a
//! `redis:7-alpine` stand-in served through the daemon's registry mirror, and a systemd host
//! container (debootstrap'ed Debian running systemd as PID 1) that the units and the prune
//! binary are deployed into. See `docs/sandbox.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ccci_sandbox::SandboxError> {
//! let cfg = ccci_sandbox::SandboxConfig::named("ccci");
//! let info = ccci_sandbox::up(&cfg).await?;
//! ccci_sandbox::deploy(&info, &cfg.deploy).await?;
//! println!("DOCKER_HOST={}", info.docker_host);
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

mod deploy;
pub mod engine;
mod error;
pub mod fixture;
mod host;
pub mod images;
pub mod layout;
mod lifecycle;
pub mod nixos;
pub mod registry_auth;
mod rootfs;
pub mod shape;
mod sys;
pub mod target;

pub use deploy::{find_prune_bin, Deploy, PORTABLE_UNITS, PRUNE_BIN_ENV};
pub use error::{Result, SandboxError, UpAndDeployError};
pub use host::exec_in_host;
pub use layout::Layout;
pub use lifecycle::{down, down_with, status, up};
pub use registry_auth::AUTH_REGISTRY_ADDR;
pub use shape::{Engine, Flavour, ImageStore, Shape};
pub use sys::netns_connect;
pub use target::gate_target;

/// Name of the default (shared) sandbox.
pub const DEFAULT_NAME: &str = "ccci";
/// Address of the private registry inside the sandbox's network namespace.
pub const REGISTRY_ADDR: &str = "127.0.0.1:5000";
/// The fixture image, by the name CI uses (served through the registry mirror).
pub const FIXTURE_IMAGE: &str = "redis:7-alpine";

/// Where a sandbox lives and what gets deployed into its systemd host.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Sandbox name; every other name (netns, cgroup parent, paths) derives from it.
    pub name: String,
    /// Persistent state: registry storage, `data.img`, logs.
    pub state_dir: PathBuf,
    /// Runtime state: socket, pidfiles, exec-root, `info.json`.
    pub run_dir: PathBuf,
    /// Cache shared by all names (debootstrap rootfs archive).
    pub cache_dir: PathBuf,
    /// Size of the sparse ext4 image that holds the daemon's data-root.
    pub data_size_bytes: u64,
    /// What `deploy` installs into the systemd host.
    pub deploy: Deploy,
    /// The host shape this sandbox models (flavour, engine, image store).
    pub shape: Shape,
}

/// Default data-root size: 6 GiB (sparse).
pub const DEFAULT_DATA_SIZE: u64 = 6 << 30;

impl SandboxConfig {
    /// The configuration of sandbox `name` with default paths.
    pub fn named(name: &str) -> Self {
        SandboxConfig {
            name: name.to_string(),
            state_dir: layout::default_state_dir(name),
            run_dir: layout::default_run_dir(name),
            cache_dir: PathBuf::from(layout::CACHE_DIR),
            data_size_bytes: DEFAULT_DATA_SIZE,
            deploy: Deploy::default(),
            shape: Shape::default(),
        }
    }

    /// The sandbox of `shape` under its default name (see [`Shape::default_name`]).
    pub fn for_shape(shape: Shape) -> Self {
        let mut cfg = Self::named(&shape.default_name());
        cfg.shape = shape;
        cfg
    }

    /// From the environment: the shape (`CCCI_SANDBOX_FLAVOUR`, `CCCI_SANDBOX_ENGINE`,
    /// `CCCI_SANDBOX_IMAGE_STORE`; see [`Shape::from_env`]), `CCCI_SANDBOX_NAME` (default: the
    /// shape's name, `ccci` for the default shape), `CCCI_SANDBOX_STATE_DIR`,
    /// `CCCI_SANDBOX_RUN_DIR`, `CCCI_SANDBOX_CACHE_DIR`, `CCCI_SANDBOX_DATA_SIZE` (bytes, or with
    /// a `K`/`M`/`G` suffix). Unset or unparsable size falls back to the default. A shape
    /// variable that names nothing is an error.
    pub fn try_from_env() -> Result<Self> {
        let shape = Shape::from_env().map_err(SandboxError::Config)?;
        Ok(Self::from_env_with(shape))
    }

    /// [`SandboxConfig::try_from_env`] with the shape given (flags), the rest from the
    /// environment.
    pub fn from_env_with(shape: Shape) -> Self {
        let name = std::env::var("CCCI_SANDBOX_NAME")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| shape.default_name());
        let mut cfg = Self::named(&name);
        cfg.shape = shape;
        if let Some(p) = std::env::var_os("CCCI_SANDBOX_STATE_DIR").filter(|s| !s.is_empty()) {
            cfg.state_dir = PathBuf::from(p);
        }
        if let Some(p) = std::env::var_os("CCCI_SANDBOX_RUN_DIR").filter(|s| !s.is_empty()) {
            cfg.run_dir = PathBuf::from(p);
        }
        if let Some(p) = std::env::var_os("CCCI_SANDBOX_CACHE_DIR").filter(|s| !s.is_empty()) {
            cfg.cache_dir = PathBuf::from(p);
        }
        if let Some(n) = std::env::var("CCCI_SANDBOX_DATA_SIZE")
            .ok()
            .and_then(|s| parse_size(&s))
        {
            cfg.data_size_bytes = n;
        }
        cfg
    }

    /// [`SandboxConfig::try_from_env`], with a shape variable that names nothing taken as
    /// unset (callers that can report errors use `try_from_env`).
    pub fn from_env() -> Self {
        Self::try_from_env().unwrap_or_else(|_| Self::from_env_with(Shape::default()))
    }

    /// Every name and path of this sandbox (see [`layout`]).
    pub fn layout(&self) -> Layout {
        Layout::of(self)
    }

    /// Name of the network namespace (`/var/run/netns/<netns>`).
    pub fn netns(&self) -> String {
        self.layout().netns()
    }

    /// Name of the systemd host container.
    pub fn host_container(&self) -> String {
        self.layout().host_container()
    }

    /// Mount point of the daemon's data-root.
    pub fn data_root(&self) -> PathBuf {
        self.layout().data_root()
    }

    /// The daemon's socket.
    pub fn socket(&self) -> PathBuf {
        self.layout().socket()
    }

    /// cgroup parent of the sandbox daemon's containers.
    pub fn cgroup_parent(&self) -> String {
        self.layout().cgroup_parent()
    }

    /// Check the name: it becomes part of paths, a netns and container names.
    pub fn validate(&self) -> Result<()> {
        let ok = !self.name.is_empty()
            && self.name.len() <= 24
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !self.name.starts_with('-');
        if !ok {
            return Err(SandboxError::Config(format!(
                "name {:?} must be 1-24 chars of [a-z0-9-], not starting with '-'",
                self.name
            )));
        }
        if self.data_size_bytes < (256 << 20) {
            return Err(SandboxError::Config(format!(
                "data_size_bytes {} is below the 256 MiB minimum",
                self.data_size_bytes
            )));
        }
        for (what, p) in [
            ("state_dir", &self.state_dir),
            ("run_dir", &self.run_dir),
            ("cache_dir", &self.cache_dir),
        ] {
            if !p.is_absolute() {
                return Err(SandboxError::Config(format!(
                    "{what} {} must be absolute",
                    p.display()
                )));
            }
        }
        Ok(())
    }
}

/// Parse `123`, `64K`, `512M`, `6G` into bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1u64 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mul)
}

/// A running sandbox: how to reach each part of it. Also written to `<run_dir>/info.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SandboxInfo {
    /// Sandbox name.
    pub name: String,
    /// `unix://<run_dir>/docker.sock`.
    pub docker_host: String,
    /// `127.0.0.1:5000`, reachable only inside the network namespace.
    pub registry: String,
    /// The registry's log (its HTTP access lines included).
    pub registry_log: PathBuf,
    /// `127.0.0.1:5001`: the registry that asks for a user (htpasswd), the one the host's
    /// client config holds a credential for (`registry_auth`). Absent in the info of sandboxes
    /// made before it: such a sandbox does not match its layout and is started again.
    #[serde(default)]
    pub auth_registry: String,
    /// Its htpasswd file (the users it accepts); `up` puts the sandbox's back.
    #[serde(default)]
    pub htpasswd: PathBuf,
    /// Network namespace name (`/var/run/netns/<netns>`).
    pub netns: String,
    /// Name of the systemd host container.
    pub host_container: String,
    /// The daemon's data-root (mount point of the loop ext4).
    pub data_root: PathBuf,
    /// The daemon's log.
    pub dockerd_log: PathBuf,
    /// Persistent state dir.
    pub state_dir: PathBuf,
    /// The host shape it models (absent in the info of sandboxes made before shapes: the
    /// default shape).
    #[serde(default)]
    pub shape: Shape,
    /// The daemon's version and API version, as it reports them (`GET /version`).
    #[serde(default)]
    pub engine_version: String,
    #[serde(default)]
    pub api_version: String,
}

impl SandboxInfo {
    /// A client for the sandbox daemon. Call `.negotiate_version().await` on it.
    pub fn docker(&self) -> Result<bollard::Docker> {
        let path = self
            .docker_host
            .strip_prefix("unix://")
            .unwrap_or(&self.docker_host);
        bollard::Docker::connect_with_unix(path, 300, bollard::API_DEFAULT_VERSION)
            .map_err(|e| SandboxError::docker("connect", e))
    }

    /// A client with the API version negotiated.
    pub async fn docker_negotiated(&self) -> Result<bollard::Docker> {
        self.docker()?
            .negotiate_version()
            .await
            .map_err(|e| SandboxError::docker("negotiate API version", e))
    }

    /// The socket path (without `unix://`).
    pub fn socket_path(&self) -> PathBuf {
        PathBuf::from(
            self.docker_host
                .strip_prefix("unix://")
                .unwrap_or(&self.docker_host),
        )
    }

    /// `nsenter --net=/var/run/netns/<netns> argv...`: run a host program inside the sandbox's
    /// network namespace (where the registry listens).
    pub fn netns_command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!(
            "--net={}",
            layout::netns_file(&self.netns).display()
        ));
        c.arg("--");
        c.args(argv);
        c
    }

    /// A TCP connection to `addr` made from inside the sandbox's network namespace.
    pub fn netns_connect(&self, addr: &str) -> std::io::Result<std::net::TcpStream> {
        sys::netns_connect(&self.netns, addr)
    }

    /// A ballast file in the data-root that brings its filesystem to at least `percent` used
    /// (allocated with `fallocate`, so it really takes the blocks). Removed on drop.
    pub fn ballast(&self, percent: u8) -> Result<Ballast> {
        Ballast::fill(&self.data_root, percent)
    }

    /// Total and used bytes of the data-root filesystem (`statvfs`).
    pub fn data_root_usage(&self) -> Result<(u64, u64)> {
        sys::fs_usage(&self.data_root)
    }
}

/// A file that takes up disk space until it is removed (or dropped).
#[derive(Debug)]
pub struct Ballast {
    path: PathBuf,
    bytes: u64,
}

impl Ballast {
    /// Allocate a file under `dir` so that the filesystem is at least `percent` used.
    pub fn fill(dir: &Path, percent: u8) -> Result<Ballast> {
        if percent == 0 || percent > 99 {
            return Err(SandboxError::Config(format!(
                "ballast percent {percent} must be 1..=99"
            )));
        }
        let (total, used) = sys::fs_usage(dir)?;
        let want = total / 100 * u64::from(percent) + total / 200; // half a percent over
        let bytes = want.saturating_sub(used).max(1 << 20);
        let path = dir.join(format!(
            ".ccci-ballast-{}",
            images::unique_seed("b").replace('-', "")
        ));
        sys::fallocate(&path, bytes)?;
        Ok(Ballast { path, bytes })
    }

    /// Where the ballast is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many bytes it takes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Remove it now, reporting errors (drop ignores them).
    pub fn remove(mut self) -> Result<()> {
        let p = std::mem::take(&mut self.path);
        std::fs::remove_file(&p).map_err(|e| SandboxError::io("ballast", &p, e))
    }
}

impl Drop for Ballast {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// (Re)install `d` into the sandbox's systemd host: files, `daemon-reload`, `enable --now`
/// of the timers. Idempotent.
pub async fn deploy(info: &SandboxInfo, d: &Deploy) -> Result<()> {
    deploy::deploy(info, d).await
}

/// Bring the sandbox up and install `cfg.deploy` into it: what `ccci-verify sandbox up`, the
/// gate's `--target sandbox` when the sandbox is down, and the tests' shared sandbox do. The fixture image is left as
/// a CI host has it (by digest, no tag: [`fixture::untag_local`]), so a sandbox an earlier test
/// or person pulled `redis:7-alpine` into by tag is a right host again. The error says which
/// step failed.
pub async fn up_and_deploy(
    cfg: &SandboxConfig,
) -> std::result::Result<SandboxInfo, UpAndDeployError> {
    let info = up(cfg).await.map_err(UpAndDeployError::Up)?;
    deploy(&info, &cfg.deploy)
        .await
        .map_err(UpAndDeployError::Deploy)?;
    let docker = info
        .docker_negotiated()
        .await
        .map_err(UpAndDeployError::Deploy)?;
    fixture::untag_local(&docker)
        .await
        .map_err(UpAndDeployError::Deploy)?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("6G"), Some(6 << 30));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("10"), Some(10));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn bad_names_are_rejected() {
        assert!(SandboxConfig::named("ccci").validate().is_ok());
        assert!(SandboxConfig::named("").validate().is_err());
        assert!(SandboxConfig::named("a/b").validate().is_err());
        assert!(SandboxConfig::named("-x").validate().is_err());
        assert!(SandboxConfig::named("UPPER").validate().is_err());
    }
}
