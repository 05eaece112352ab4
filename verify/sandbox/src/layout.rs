//! Every path and name of a sandbox, in one place.
//!
//! A sandbox is identified by its name, its persistent state dir and its runtime dir; every
//! other name (network namespace, host container, cgroup parent) and path (socket, pidfiles,
//! lock, data image, logs, ...) derives from those three here and nowhere else. The config,
//! the lifecycle, the systemd host and the deploy all ask a [`Layout`]. Paths inside the
//! systemd host live in [`in_host`].

use std::path::{Path, PathBuf};

use crate::{SandboxConfig, SandboxInfo, REGISTRY_ADDR};

/// Parent of every sandbox's default state dir (`<this>/<name>`).
pub const STATE_BASE: &str = "/var/lib/ccci-sandbox";
/// Parent of every sandbox's default runtime dir (`<this>/<name>`).
pub const RUN_BASE: &str = "/run/ccci-sandbox";
/// The cache shared by all names (debootstrap rootfs archive).
pub const CACHE_DIR: &str = "/var/cache/ccci-sandbox";
/// Where `ip netns` keeps its namespace files.
pub const NETNS_DIR: &str = "/var/run/netns";
/// The same directory through `/run` (`/var/run` is a link to it; mounts may show either).
const NETNS_DIR_RUN: &str = "/run/netns";

/// Default persistent state dir of sandbox `name`.
pub fn default_state_dir(name: &str) -> PathBuf {
    Path::new(STATE_BASE).join(name)
}

/// Default runtime dir of sandbox `name`.
pub fn default_run_dir(name: &str) -> PathBuf {
    Path::new(RUN_BASE).join(name)
}

/// The file that marks a directory as made by sandbox `name` (its content is the name). Only a
/// marked directory, or the default one of the sandbox's name, is ever cleaned: a
/// `CCCI_SANDBOX_RUN_DIR=/run` must not make `down` kill every process whose command line
/// mentions `/run/` and delete `/run`.
pub fn marker_file(dir: &Path) -> PathBuf {
    dir.join(".ccci-sandbox")
}

/// Make `dir` the sandbox's own: create it, or take it when it is empty, already marked for
/// `name`, or the sandbox's own `default` directory (sandboxes made before the marker existed
/// have unmarked default dirs); a non-empty directory the sandbox did not make is refused.
pub fn claim_dir(dir: &Path, name: &str, default: Option<&Path>) -> std::io::Result<()> {
    let marker = marker_file(dir);
    if dir.exists() {
        if owns_dir(dir, name, None) {
            return Ok(());
        }
        if owns_dir(dir, name, default) {
            return std::fs::write(&marker, name);
        }
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !empty {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists, is not empty and was not made by sandbox {name} (no {} naming it): choose a new or empty directory",
                    dir.display(),
                    marker.display()
                ),
            ));
        }
    } else {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&marker, name)
}

/// `dir` was made by sandbox `name`: it holds the marker naming it, or it is `default` (the
/// sandbox's own default directory, also for sandboxes made before the marker existed).
pub fn owns_dir(dir: &Path, name: &str, default: Option<&Path>) -> bool {
    std::fs::read_to_string(marker_file(dir)).is_ok_and(|m| m.trim() == name)
        || default.is_some_and(|d| d == dir)
}

/// The file of network namespace `netns` (what `nsenter --net=` and `setns` open).
pub fn netns_file(netns: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(netns)
}

/// The rootfs docker-archive for recipe `hash` in the shared cache.
pub(crate) fn rootfs_archive(cache_dir: &Path, hash: &str) -> PathBuf {
    cache_dir.join(format!("systemd-host-{hash}.tar"))
}

/// The tag of the systemd host image loaded from that archive.
pub(crate) fn rootfs_tag(hash: &str) -> String {
    format!("ccci-sandbox/systemd-host:{hash}")
}

/// The lock that serialises rootfs builds in the shared cache.
pub(crate) fn rootfs_lock(cache_dir: &Path) -> PathBuf {
    cache_dir.join("rootfs.lock")
}

/// Paths inside the systemd host container.
pub mod in_host {
    /// Where the daemon's socket is mounted.
    pub const DOCKER_SOCKET: &str = "/run/docker.sock";
    /// The deployed `ci-docker-prune` binary.
    pub const PRUNE_BIN: &str = "/usr/local/bin/ci-docker-prune";
    /// Where deployed unit files go.
    pub const UNIT_DIR: &str = "/etc/systemd/system";
    /// Default path of the deployed source tree.
    pub const DEPLOYED_TREE: &str = "/root/cc-ci";
    /// The Docker client config's directory (mode 0700).
    pub const DOCKER_CONFIG_DIR: &str = "/root/.docker";
    /// The Docker client config (mode 0600).
    pub const DOCKER_CONFIG: &str = "/root/.docker/config.json";
    /// The sandbox's own state in the host.
    pub const STATE_DIR: &str = "/var/lib/ccci-sandbox";
    /// Where the host remembers what was deployed last (a digest of the whole `Deploy`).
    pub const DEPLOY_MARKER: &str = "/var/lib/ccci-sandbox/deployed.sha256";
}

/// The names and paths of one sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    name: String,
    state_dir: PathBuf,
    run_dir: PathBuf,
}

impl Layout {
    /// The layout of sandbox `name` with these state and runtime dirs.
    pub fn new(name: &str, state_dir: impl Into<PathBuf>, run_dir: impl Into<PathBuf>) -> Self {
        Layout {
            name: name.to_string(),
            state_dir: state_dir.into(),
            run_dir: run_dir.into(),
        }
    }

    /// The layout of a configured sandbox.
    pub fn of(cfg: &SandboxConfig) -> Self {
        Self::new(&cfg.name, &cfg.state_dir, &cfg.run_dir)
    }

    /// The layout of a running sandbox, from its info: the runtime dir is the socket's
    /// directory (the default one when the socket has none).
    pub fn of_info(info: &SandboxInfo) -> Self {
        let run_dir = info
            .socket_path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| default_run_dir(&info.name));
        Self::new(&info.name, &info.state_dir, run_dir)
    }

    /// The sandbox's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Persistent state: registry storage, `data.img`, logs.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Runtime state: socket, pidfiles, exec-root, `info.json`.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    // --- names -------------------------------------------------------------------------

    /// Name of the network namespace.
    pub fn netns(&self) -> String {
        format!("ccci-{}", self.name)
    }

    /// The network namespace's file (`/var/run/netns/<netns>`).
    pub fn netns_file(&self) -> PathBuf {
        netns_file(&self.netns())
    }

    /// The namespace file under both names of its directory (`/var/run` and `/run`).
    pub fn netns_files(&self) -> [PathBuf; 2] {
        let n = self.netns();
        [netns_file(&n), Path::new(NETNS_DIR_RUN).join(n)]
    }

    /// Name of the systemd host container.
    pub fn host_container(&self) -> String {
        format!("{}-host", self.name)
    }

    /// cgroup parent of the sandbox daemon's containers.
    pub fn cgroup_parent(&self) -> String {
        format!("ccci-sandbox-{}", self.name)
    }

    // --- runtime dir -------------------------------------------------------------------

    /// The daemon's socket.
    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("docker.sock")
    }

    /// `unix://<socket>`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The lock that serialises `up`, `down` and `deploy`. It sits beside the runtime dir (not
    /// in it) so `down` can remove the runtime dir while holding it.
    pub fn lock(&self) -> PathBuf {
        let name = self
            .run_dir
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| self.name.clone());
        self.run_dir
            .parent()
            .unwrap_or(Path::new("/run"))
            .join(format!("{name}.lock"))
    }

    /// `info.json`: the [`SandboxInfo`] of a sandbox that came up.
    pub fn info_file(&self) -> PathBuf {
        self.run_dir.join("info.json")
    }

    /// The daemon's pidfile.
    pub fn dockerd_pid(&self) -> PathBuf {
        self.run_dir.join("dockerd.pid")
    }

    /// The registry's pidfile.
    pub fn registry_pid(&self) -> PathBuf {
        self.run_dir.join("registry.pid")
    }

    /// The authenticated registry's pidfile.
    pub fn auth_registry_pid(&self) -> PathBuf {
        self.run_dir.join("auth-registry.pid")
    }

    /// The daemon's exec-root.
    pub fn exec_root(&self) -> PathBuf {
        self.run_dir.join("exec")
    }

    /// A private, non-recursive bind of the data-root filesystem, mounted into the host.
    pub fn data_view(&self) -> PathBuf {
        self.run_dir.join("data-view")
    }

    // --- state dir ---------------------------------------------------------------------

    /// Mount point of the daemon's data-root.
    pub fn data_root(&self) -> PathBuf {
        self.state_dir.join("data-root")
    }

    /// The sparse ext4 image mounted at the data-root.
    pub fn data_img(&self) -> PathBuf {
        self.state_dir.join("data.img")
    }

    /// The registry's storage.
    pub fn registry_store(&self) -> PathBuf {
        self.state_dir.join("registry")
    }

    /// Marker of the fixture image pushed to the registry.
    pub fn fixture_marker(&self) -> PathBuf {
        self.registry_store().join(".ccci-fixture-redis")
    }

    /// The registry's config file.
    pub fn registry_cfg(&self) -> PathBuf {
        self.state_dir.join("registry.yml")
    }

    /// The authenticated registry's config file, storage (it holds no image) and htpasswd
    /// file (see `registry_auth`).
    pub fn auth_registry_cfg(&self) -> PathBuf {
        self.state_dir.join("auth-registry.yml")
    }

    pub fn auth_registry_store(&self) -> PathBuf {
        self.state_dir.join("auth-registry")
    }

    pub fn htpasswd(&self) -> PathBuf {
        self.state_dir.join("auth-registry.htpasswd")
    }

    /// The authenticated registry's log.
    pub fn auth_registry_log(&self) -> PathBuf {
        self.logs().join("auth-registry.log")
    }

    /// The daemon's config file.
    pub fn daemon_json(&self) -> PathBuf {
        self.state_dir.join("daemon.json")
    }

    /// The daemon's trust key (kept out of `/etc/docker`).
    pub fn dockerd_key(&self) -> PathBuf {
        self.state_dir.join("key.json")
    }

    /// Log directory.
    pub fn logs(&self) -> PathBuf {
        self.state_dir.join("logs")
    }

    /// The registry's log (its HTTP access lines included).
    pub fn registry_log(&self) -> PathBuf {
        self.logs().join("registry.log")
    }

    /// The daemon's log.
    pub fn dockerd_log(&self) -> PathBuf {
        self.logs().join("dockerd.log")
    }

    /// How to reach each part of this sandbox once it is up.
    pub fn info(&self) -> SandboxInfo {
        SandboxInfo {
            name: self.name.clone(),
            docker_host: self.docker_host(),
            registry: REGISTRY_ADDR.to_string(),
            registry_log: self.registry_log(),
            auth_registry: crate::AUTH_REGISTRY_ADDR.to_string(),
            htpasswd: self.htpasswd(),
            netns: self.netns(),
            host_container: self.host_container(),
            data_root: self.data_root(),
            dockerd_log: self.dockerd_log(),
            state_dir: self.state_dir.clone(),
            shape: Default::default(),
            engine_version: String::new(),
            api_version: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_marked_or_default_dirs_are_owned() {
        let t = tempfile::tempdir().unwrap();
        let fresh = t.path().join("fresh");
        claim_dir(&fresh, "ccci-x", None).unwrap();
        assert!(owns_dir(&fresh, "ccci-x", None));
        assert!(!owns_dir(&fresh, "ccci-y", None), "another sandbox's dir");
        claim_dir(&fresh, "ccci-x", None).unwrap(); // again: fine
                                                    // a directory with someone else's files is refused, and not owned
        let busy = t.path().join("busy");
        std::fs::create_dir(&busy).unwrap();
        std::fs::write(busy.join("docker.pid"), "1").unwrap();
        let e = claim_dir(&busy, "ccci-x", None).unwrap_err();
        assert!(
            e.to_string().contains("was not made by sandbox ccci-x"),
            "{e}"
        );
        assert!(!owns_dir(&busy, "ccci-x", None));
        assert!(!owns_dir(
            Path::new("/run"),
            "ccci",
            Some(&default_run_dir("ccci"))
        ));
        assert!(owns_dir(
            &default_run_dir("ccci"),
            "ccci",
            Some(&default_run_dir("ccci"))
        ));
        // an empty directory is taken
        let empty = t.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        claim_dir(&empty, "ccci-x", None).unwrap();
        assert!(owns_dir(&empty, "ccci-x", None));
        // the sandbox's own default dir from before the marker: taken, and marked now
        let legacy = t.path().join("legacy");
        std::fs::create_dir(&legacy).unwrap();
        std::fs::write(legacy.join("data.img"), "x").unwrap();
        claim_dir(&legacy, "ccci-x", Some(&legacy)).unwrap();
        assert!(owns_dir(&legacy, "ccci-x", None), "marked on claim");
    }

    #[test]
    fn names_and_paths_of_the_default_sandbox() {
        let l = Layout::of(&SandboxConfig::named("ccci"));
        assert_eq!(l.netns(), "ccci-ccci");
        assert_eq!(l.host_container(), "ccci-host");
        assert_eq!(l.cgroup_parent(), "ccci-sandbox-ccci");
        assert_eq!(l.socket(), Path::new("/run/ccci-sandbox/ccci/docker.sock"));
        assert_eq!(l.docker_host(), "unix:///run/ccci-sandbox/ccci/docker.sock");
        assert_eq!(l.lock(), Path::new("/run/ccci-sandbox/ccci.lock"));
        assert_eq!(
            l.data_root(),
            Path::new("/var/lib/ccci-sandbox/ccci/data-root")
        );
        assert_eq!(l.netns_file(), Path::new("/var/run/netns/ccci-ccci"));
        assert_eq!(
            l.dockerd_log(),
            Path::new("/var/lib/ccci-sandbox/ccci/logs/dockerd.log")
        );
    }

    #[test]
    fn the_layout_of_an_info_is_the_layout_it_came_from() {
        let mut cfg = SandboxConfig::named("life");
        cfg.state_dir = "/tmp/s/state".into();
        cfg.run_dir = "/tmp/r/run-life".into();
        let l = Layout::of(&cfg);
        assert_eq!(Layout::of_info(&l.info()), l);
        assert_eq!(l.lock(), Path::new("/tmp/r/run-life.lock"));
    }
}
