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
    let address = containerd_address(info);
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

/// The daemon's config file at its default place (Debian's packaging; on NixOS a symlink into
/// the store, so a new config is another file).
pub const DOCKER_CONFIG: &str = "/etc/docker/daemon.json";
/// dockerd's pidfile at its default place: written anew at every start of the daemon.
pub const DOCKER_PIDFILE: &str = "/run/docker.pid";

/// Which file a path is, as `stat` tells (symlinks followed): enough to notice that a
/// directory was replaced or mounted over, or that a file was rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    pub size: u64,
}

impl FileId {
    /// The file at `path` on this host, if it exists.
    pub fn of(path: &Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileId {
            dev: m.dev(),
            ino: m.ino(),
            mtime_ns: m
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.mtime_nsec()),
            size: m.size(),
        })
    }

    fn same_place(&self, other: &FileId) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// What the roots were learnt against: cheap facts of this host, read without the daemon,
/// that change when the daemon's roots may have changed since (docs/prune-policy.md, "Where
/// the daemon keeps its data").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// Each remembered root directory (device and inode; `None`: not on this host).
    pub roots: std::collections::BTreeMap<PathBuf, Option<FileId>>,
    /// The daemon's and containerd's config files ([`DOCKER_CONFIG`], [`CONTAINERD_CONFIG`]).
    pub config: std::collections::BTreeMap<PathBuf, Option<FileId>>,
    /// Files a start of the daemon makes anew: its pidfile ([`DOCKER_PIDFILE`]) and the socket
    /// of the containerd it talks to (`Containerd.Address` of `GET /info`).
    pub starts: std::collections::BTreeMap<PathBuf, Option<FileId>>,
}

impl Stamp {
    /// The stamp of `roots`, learnt from an `/info` answer whose containerd address (if any)
    /// is `containerd_address`; `stat` reads a file's identity.
    pub fn take(
        roots: &DaemonRoots,
        containerd_address: Option<&str>,
        stat: impl Fn(&Path) -> Option<FileId>,
    ) -> Stamp {
        let at = |paths: Vec<PathBuf>| paths.into_iter().map(|p| (p.clone(), stat(&p))).collect();
        Stamp {
            roots: at(roots.paths()),
            config: at(vec![DOCKER_CONFIG.into(), CONTAINERD_CONFIG.into()]),
            starts: at(std::iter::once(PathBuf::from(DOCKER_PIDFILE))
                .chain(containerd_address.and_then(socket_path))
                .collect()),
        }
    }

    /// Why roots remembered with this stamp may be stale now, if they may: a remembered root
    /// is gone or is another directory (a data-root moved, a disk mounted over it), a config
    /// file changed, or the daemon started again since (a store switch or a data-root move
    /// takes effect only at a start). A start file that is absent now is no reason (a stopped,
    /// socket-activated daemon stays stopped: nothing would answer without starting it).
    pub fn why_stale(&self, stat: impl Fn(&Path) -> Option<FileId>) -> Option<String> {
        for (p, was) in &self.roots {
            match (was, stat(p)) {
                (Some(_), None) => return Some(format!("remembered root {} is gone", p.display())),
                (Some(a), Some(b)) if !a.same_place(&b) => {
                    return Some(format!(
                        "remembered root {} is another directory now",
                        p.display()
                    ))
                }
                (None, Some(_)) => {
                    return Some(format!("remembered root {} appeared", p.display()))
                }
                _ => {}
            }
        }
        for (p, was) in &self.config {
            if *was != stat(p) {
                return Some(format!("{} changed", p.display()));
            }
        }
        for (p, was) in &self.starts {
            if let Some(now) = stat(p) {
                if *was != Some(now) {
                    return Some(format!("the daemon started again ({} is new)", p.display()));
                }
            }
        }
        None
    }
}

/// The filesystem path of a containerd address (`/run/…/containerd.sock`, or `unix://…`).
fn socket_path(address: &str) -> Option<PathBuf> {
    let p = address.strip_prefix("unix://").unwrap_or(address);
    p.starts_with('/').then(|| PathBuf::from(p))
}

/// The containerd address of a `GET /info` answer (API ≥ 1.46), if any.
pub fn containerd_address(info: &serde_json::Value) -> Option<&str> {
    info.get("Containerd")
        .and_then(|c| c.get("Address"))
        .and_then(|a| a.as_str())
        .filter(|a| !a.is_empty())
}

/// The remembered roots and the stamp they were learnt with (a file written before stamps has
/// none: its roots may be stale).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remembered {
    #[serde(flatten)]
    pub roots: DaemonRoots,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<Stamp>,
}

impl Remembered {
    /// Why these roots may be stale on this host now ([`Stamp::why_stale`]).
    pub fn why_stale(&self, stat: impl Fn(&Path) -> Option<FileId>) -> Option<String> {
        match &self.stamp {
            None => Some("they were remembered without the facts to check them against".into()),
            Some(s) => s.why_stale(stat),
        }
    }
}

/// The remembered roots in `state_dir`, if any (an unreadable file counts as none).
pub fn load(state_dir: &Path) -> Option<DaemonRoots> {
    load_remembered(state_dir).map(|r| r.roots)
}

/// The remembered roots in `state_dir` with their stamp, if any.
pub fn load_remembered(state_dir: &Path) -> Option<Remembered> {
    let text = std::fs::read_to_string(state_dir.join(STATE_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Remember `roots` with `stamp` in `state_dir` ([`crate::statefile::write_atomic`]).
pub fn save(state_dir: &Path, remembered: &Remembered) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(remembered).map_err(std::io::Error::other)?;
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

    fn id(dev: u64, ino: u64, mtime_ns: i64) -> Option<FileId> {
        Some(FileId {
            dev,
            ino,
            mtime_ns,
            size: 10,
        })
    }

    /// A host by hand: what `stat` answers for each path.
    fn host(files: &[(&str, Option<FileId>)]) -> impl Fn(&Path) -> Option<FileId> {
        let m: std::collections::HashMap<PathBuf, Option<FileId>> =
            files.iter().map(|(p, f)| (PathBuf::from(p), *f)).collect();
        move |p: &Path| m.get(p).copied().flatten()
    }

    fn containerd_roots() -> DaemonRoots {
        DaemonRoots {
            store: ImageStore::Containerd,
            docker_root: "/var/lib/docker".into(),
            containerd_root: Some("/var/lib/docker/containerd/daemon".into()),
            containerd_how: "dockerd's own containerd at /run/docker/containerd/containerd.sock"
                .into(),
        }
    }

    const SOCK: &str = "/run/docker/containerd/containerd.sock";

    fn learnt_on() -> Vec<(&'static str, Option<FileId>)> {
        vec![
            ("/var/lib/docker", id(1, 100, 5)),
            ("/var/lib/docker/containerd/daemon", id(1, 200, 5)),
            (DOCKER_CONFIG, id(2, 300, 7)),
            (CONTAINERD_CONFIG, None),
            (DOCKER_PIDFILE, id(3, 400, 9)),
            (SOCK, id(3, 500, 9)),
        ]
    }

    /// Each change of the host, by hand, and whether it makes the roots stale (and why).
    #[test]
    fn a_stamp_says_when_the_roots_may_be_stale() {
        let stamp = Stamp::take(
            &containerd_roots(),
            Some(&format!("unix://{SOCK}")),
            host(&learnt_on()),
        );
        let with = |path: &str, f: Option<FileId>| {
            let mut h = learnt_on();
            for e in h.iter_mut().filter(|e| e.0 == path) {
                e.1 = f;
            }
            stamp.why_stale(host(&h))
        };
        assert_eq!(stamp.why_stale(host(&learnt_on())), None, "nothing changed");
        // the data-root's contents change its mtime: not a reason
        assert_eq!(with("/var/lib/docker", id(1, 100, 99)), None);
        let table: [(&str, Option<FileId>, Option<&str>); 8] = [
            (
                "/var/lib/docker",
                None,
                Some("remembered root /var/lib/docker is gone"),
            ),
            (
                "/var/lib/docker",
                id(9, 100, 5),
                Some("remembered root /var/lib/docker is another directory now"),
            ),
            (
                "/var/lib/docker/containerd/daemon",
                id(1, 201, 5),
                Some("remembered root /var/lib/docker/containerd/daemon is another directory now"),
            ),
            (
                DOCKER_CONFIG,
                id(2, 300, 8),
                Some("/etc/docker/daemon.json changed"),
            ),
            (DOCKER_CONFIG, None, Some("/etc/docker/daemon.json changed")),
            (
                CONTAINERD_CONFIG,
                id(2, 301, 1),
                Some("/etc/containerd/config.toml changed"),
            ),
            (
                DOCKER_PIDFILE,
                id(3, 401, 10),
                Some("the daemon started again (/run/docker.pid is new)"),
            ),
            // a stopped (socket-activated) daemon: no pidfile, nothing to ask
            (DOCKER_PIDFILE, None, None),
        ];
        for (path, now, why) in table {
            assert_eq!(with(path, now).as_deref(), why, "{path} -> {now:?}");
        }
        assert_eq!(
            with(SOCK, id(3, 501, 10)).as_deref(),
            Some("the daemon started again (/run/docker/containerd/containerd.sock is new)")
        );
    }

    #[test]
    fn roots_remembered_before_stamps_may_be_stale_and_still_load() {
        let old = r#"{"store":"legacy","docker_root":"/var/lib/docker","containerd_root":null,"containerd_how":""}"#;
        let r: Remembered = serde_json::from_str(old).unwrap();
        assert_eq!(r.roots.store, ImageStore::Legacy);
        assert!(r.why_stale(|_| None).is_some());
        // a remote daemon's roots (not on this host) with nothing else: not stale
        let stamp = Stamp::take(&r.roots, None, |_| None);
        let r = Remembered {
            stamp: Some(stamp),
            ..r
        };
        assert_eq!(r.why_stale(|_| None), None);
        let back: Remembered = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
