//! Where the daemon keeps its data: Docker's data-root and, with the containerd image store,
//! containerd's root — found from the daemon's own `GET /info` (read raw, so every API version
//! from 1.41 to 1.52+ parses the same). Pure: the filesystem facts it needs are passed in.
//!
//! - The image store: `DriverStatus` holds `["driver-type", "io.containerd.snapshotter.v1"]`
//!   under the containerd store (Docker ≥ 24; Docker 29's default on fresh installs); anything
//!   else is the legacy graph-driver store, whose images live under `DockerRootDir`.
//! - containerd's root: the daemon does not report it. `Containerd.Address` (API ≥ 1.46) says
//!   which containerd it talks to: dockerd's own (managed) containerd listens under dockerd's
//!   exec-root and keeps its root at `<DockerRootDir>/containerd/daemon`; a system containerd
//!   (`/run/containerd/containerd.sock`, Debian's and NixOS's packaging) keeps it where its
//!   config says (`root` in `/etc/containerd/config.toml`), by default `/var/lib/containerd`.
//!   Without the address (API < 1.46), an existing `<DockerRootDir>/containerd/daemon` means
//!   the managed one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Which image store the daemon uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageStore {
    Legacy,
    Containerd,
}

/// The daemon's data directories, and how each was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonRoots {
    pub store: ImageStore,
    /// `DockerRootDir` (empty when the daemon reports none).
    pub docker_root: PathBuf,
    /// containerd's root, with the containerd store only.
    pub containerd_root: Option<PathBuf>,
    /// How containerd's root was found (for the log line), empty with the legacy store.
    pub containerd_how: String,
}

/// The system containerd's config, where its `root` is set.
pub const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
/// containerd's default root.
pub const CONTAINERD_DEFAULT_ROOT: &str = "/var/lib/containerd";
const SYSTEM_SOCKETS: [&str; 2] = [
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
];

/// The image store a `GET /info` answer reports.
pub fn image_store(info: &serde_json::Value) -> ImageStore {
    let containerd = info
        .get("DriverStatus")
        .and_then(|s| s.as_array())
        .is_some_and(|rows| {
            rows.iter().any(|r| {
                r.get(0).and_then(|k| k.as_str()) == Some("driver-type")
                    && r.get(1)
                        .and_then(|v| v.as_str())
                        .is_some_and(|v| v.starts_with("io.containerd.snapshotter"))
            })
        });
    if containerd {
        ImageStore::Containerd
    } else {
        ImageStore::Legacy
    }
}

/// The roots of a `GET /info` answer. `exists` tells whether a path exists on the host;
/// `containerd_config` returns the system containerd's config text, if readable.
pub fn from_info(
    info: &serde_json::Value,
    exists: impl Fn(&Path) -> bool,
    containerd_config: impl Fn() -> Option<String>,
) -> DaemonRoots {
    let docker_root = PathBuf::from(
        info.get("DockerRootDir")
            .and_then(|v| v.as_str())
            .unwrap_or(""),
    );
    let store = image_store(info);
    if store == ImageStore::Legacy {
        return DaemonRoots {
            store,
            docker_root,
            containerd_root: None,
            containerd_how: String::new(),
        };
    }
    let managed = docker_root.join("containerd").join("daemon");
    let address = info
        .get("Containerd")
        .and_then(|c| c.get("Address"))
        .and_then(|a| a.as_str())
        .filter(|a| !a.is_empty());
    let system = |how: String| -> (PathBuf, String) {
        match containerd_config().as_deref().and_then(config_root) {
            Some(root) => (root, format!("{how}, `root` in {CONTAINERD_CONFIG}")),
            None => (
                PathBuf::from(CONTAINERD_DEFAULT_ROOT),
                format!("{how}, its default root"),
            ),
        }
    };
    let (root, how) = match address {
        Some(a) if SYSTEM_SOCKETS.contains(&a) => system(format!("system containerd at {a}")),
        Some(a) => (managed, format!("dockerd's own containerd at {a}")),
        None if exists(&managed) => (
            managed,
            "dockerd's own containerd (the daemon reports no address; its root exists)".into(),
        ),
        None => system("system containerd (the daemon reports no address)".into()),
    };
    DaemonRoots {
        store,
        docker_root,
        containerd_root: Some(root),
        containerd_how: how,
    }
}

/// `root = "…"` of a containerd config (TOML), if set.
fn config_root(text: &str) -> Option<PathBuf> {
    let v: toml::Value = toml::from_str(text).ok()?;
    v.get("root")
        .and_then(|r| r.as_str())
        .filter(|r| r.starts_with('/'))
        .map(PathBuf::from)
}

impl DaemonRoots {
    /// The directories whose filesystems hold the daemon's data: `DockerRootDir`, and
    /// containerd's root with the containerd store.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if !self.docker_root.as_os_str().is_empty() {
            out.push(self.docker_root.clone());
        }
        out.extend(self.containerd_root.clone());
        out
    }

    /// For the log line: `containerd store: Docker root /x, containerd root /y (how)`.
    pub fn describe(&self) -> String {
        match &self.containerd_root {
            Some(c) => format!(
                "containerd image store: Docker root {}, containerd root {} ({})",
                self.docker_root.display(),
                c.display(),
                self.containerd_how
            ),
            None => format!(
                "legacy image store under Docker root {}",
                self.docker_root.display()
            ),
        }
    }
}

/// The file in the state directory that remembers the daemon's roots between runs, so a run
/// below the threshold measures them without contacting the daemon.
pub const STATE_FILE: &str = "daemon-roots.json";

/// The remembered roots in `state_dir`, if any (an unreadable file counts as none).
pub fn load(state_dir: &Path) -> Option<DaemonRoots> {
    let text = std::fs::read_to_string(state_dir.join(STATE_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Remember `roots` in `state_dir` ([`crate::statefile::write_atomic`]).
pub fn save(state_dir: &Path, roots: &DaemonRoots) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(roots).map_err(std::io::Error::other)?;
    crate::statefile::write_atomic(state_dir, STATE_FILE, (text + "\n").as_bytes())
}

/// The roots of a live host's `GET /info` answer: the filesystem facts from this host.
pub fn of_host(info: &serde_json::Value) -> DaemonRoots {
    from_info(
        info,
        |p| p.exists(),
        || std::fs::read_to_string(CONTAINERD_CONFIG).ok(),
    )
}

impl DaemonRoots {
    /// The directories the disk gate measures besides `--path`: Docker's data-root and
    /// containerd's root with the containerd store; none with the legacy store (its data
    /// lives under the data-root the operator names with `--path`, as before).
    pub fn gate_paths(&self) -> Vec<PathBuf> {
        match self.store {
            ImageStore::Containerd => self.paths(),
            ImageStore::Legacy => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> serde_json::Value {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/docker-api")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
    }

    #[test]
    fn legacy_store_is_the_docker_root_only() {
        for f in ["info-20.10-api1.41.json", "info-26.1-api1.45.json"] {
            let r = from_info(&fixture(f), |_| false, || None);
            assert_eq!(r.store, ImageStore::Legacy, "{f}");
            assert_eq!(r.paths(), [PathBuf::from("/var/lib/docker")], "{f}");
        }
    }

    #[test]
    fn managed_containerd_keeps_its_root_under_the_docker_root() {
        let r = from_info(
            &fixture("info-28.5-api1.51-containerd.json"),
            |_| false,
            || None,
        );
        assert_eq!(r.store, ImageStore::Containerd);
        assert_eq!(
            r.containerd_root.as_deref(),
            Some(Path::new(
                "/var/lib/ccci-sandbox/ccci-sid-ctrd/data-root/containerd/daemon"
            ))
        );
        assert!(
            r.containerd_how
                .starts_with("dockerd's own containerd at /run/ccci-sandbox"),
            "{}",
            r.containerd_how
        );
    }

    #[test]
    fn system_containerd_root_from_its_config_or_the_default() {
        let info = fixture("info-29.0-api1.52-containerd.json");
        let r = from_info(&info, |_| false, || None);
        assert_eq!(
            r.containerd_root.as_deref(),
            Some(Path::new("/var/lib/containerd"))
        );
        assert!(
            r.containerd_how.contains("default root"),
            "{}",
            r.containerd_how
        );
        let r = from_info(
            &info,
            |_| false,
            || Some("version = 2\nroot = \"/srv/containerd\"\n".into()),
        );
        assert_eq!(
            r.containerd_root.as_deref(),
            Some(Path::new("/srv/containerd"))
        );
        assert_eq!(
            r.paths(),
            [
                PathBuf::from("/var/lib/docker"),
                PathBuf::from("/srv/containerd")
            ]
        );
        assert!(
            r.describe()
                .contains("root` in /etc/containerd/config.toml"),
            "{}",
            r.describe()
        );
    }

    #[test]
    fn without_an_address_the_managed_root_counts_when_it_exists() {
        let mut info = fixture("info-28.5-api1.51-containerd.json");
        info.as_object_mut().unwrap().remove("Containerd");
        let managed =
            PathBuf::from("/var/lib/ccci-sandbox/ccci-sid-ctrd/data-root/containerd/daemon");
        let m2 = managed.clone();
        let r = from_info(&info, move |p| p == m2, || None);
        assert_eq!(r.containerd_root, Some(managed));
        let r = from_info(&info, |_| false, || None);
        assert_eq!(
            r.containerd_root.as_deref(),
            Some(Path::new("/var/lib/containerd"))
        );
    }
}
