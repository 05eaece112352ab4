//! The Docker engine a sandbox runs: the machine's own (bookworm's `docker.io` 20.10), a
//! directory of binaries, or Debian trixie's / sid's `docker.io` and `containerd` fetched into
//! the sandbox cache — never installed over the system's Docker.
//!
//! A fetch uses apt with private state only (`-o Dir::Etc::SourceList=… -o
//! Dir::State::Lists=… -o Dir::Cache=…`): `apt-get update` of that one suite, the newest
//! version of each package resolved then (sid moves: nothing is pinned), `apt-get download`,
//! `dpkg -x` into `<cache_dir>/engines/<suite>-docker.io-<v>-containerd-<v>/`. Only
//! `docker.io` (dockerd) and `containerd` (containerd, its runc shim) are taken: bookworm's
//! `runc` and `docker-init` (tini) work with them, while sid's `runc` needs a newer glibc than
//! bookworm's. An extraction is complete once its marker is written, and reused by every later
//! `up` of the same versions; when the mirror cannot be reached, the newest complete
//! extraction of the suite is used and said.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Result, SandboxError};
use crate::shape::Engine;
use crate::sys;

/// The packages taken from the suite.
pub const PACKAGES: [&str; 2] = ["docker.io", "containerd"];

/// Marker written once an extraction is complete (its content: the package versions).
const COMPLETE: &str = ".ccci-engine-complete";

/// The binaries a sandbox starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineBins {
    /// The `dockerd` to run.
    pub dockerd: PathBuf,
    /// Directories put first on dockerd's PATH (where it finds `containerd` and containerd
    /// finds its shim); empty for the system engine.
    pub path_dirs: Vec<PathBuf>,
    /// What was resolved: `system`, the directory, or `docker.io <v>, containerd <v> (suite)`.
    pub description: String,
}

impl EngineBins {
    /// dockerd's PATH: `path_dirs` before the caller's PATH (and the sbin dirs, where
    /// bookworm's `runc` lives).
    pub fn path_env(&self) -> String {
        let mut dirs: Vec<PathBuf> = self.path_dirs.clone();
        let path = std::env::var_os("PATH").unwrap_or_default();
        dirs.extend(std::env::split_paths(&path));
        for extra in [
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ] {
            let p = PathBuf::from(extra);
            if !dirs.contains(&p) {
                dirs.push(p);
            }
        }
        std::env::join_paths(dirs)
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default()
    }
}

/// The suite an engine is fetched from (`None`: not fetched).
pub fn suite(engine: &Engine) -> Option<&'static str> {
    match engine {
        Engine::Trixie => Some("trixie"),
        Engine::Sid => Some("sid"),
        Engine::Bookworm | Engine::Path(_) => None,
    }
}

/// The binaries of `engine`, fetching them into `cache_dir` when needed. Blocking (runs apt).
pub fn ensure(engine: &Engine, cache_dir: &Path, mirror: &str) -> Result<EngineBins> {
    match engine {
        Engine::Bookworm => {
            let dockerd =
                sys::which("dockerd").ok_or_else(|| SandboxError::MissingPrerequisite {
                    program: "dockerd".into(),
                    package: "docker.io".into(),
                })?;
            Ok(EngineBins {
                dockerd,
                path_dirs: vec![],
                description: "system docker.io".into(),
            })
        }
        Engine::Path(dir) => {
            for bin in ["dockerd", "containerd", "containerd-shim-runc-v2"] {
                if !dir.join(bin).is_file() {
                    return Err(SandboxError::Config(format!(
                        "engine directory {} has no `{bin}`: it must hold dockerd, containerd and containerd-shim-runc-v2",
                        dir.display()
                    )));
                }
            }
            Ok(EngineBins {
                dockerd: dir.join("dockerd"),
                path_dirs: vec![dir.clone()],
                description: format!("binaries in {}", dir.display()),
            })
        }
        Engine::Trixie | Engine::Sid => {
            let suite = suite(engine).unwrap_or("sid");
            fetch(suite, cache_dir, mirror)
        }
    }
}

/// Where the private apt state of `suite` lives.
fn apt_dir(cache_dir: &Path, suite: &str) -> PathBuf {
    cache_dir.join("engines").join(format!("apt-{suite}"))
}

/// The extraction directory of these versions.
fn extract_dir(cache_dir: &Path, suite: &str, versions: &[(String, String)]) -> PathBuf {
    let key: Vec<String> = versions.iter().map(|(p, v)| format!("{p}-{v}")).collect();
    cache_dir
        .join("engines")
        .join(format!("{suite}-{}", key.join("-")))
}

fn bins_of(dir: &Path, suite: &str, versions: &[(String, String)]) -> EngineBins {
    let what: Vec<String> = versions.iter().map(|(p, v)| format!("{p} {v}")).collect();
    EngineBins {
        dockerd: dir.join("usr/sbin/dockerd"),
        path_dirs: vec![dir.join("usr/bin"), dir.join("usr/sbin")],
        description: format!("{} (Debian {suite})", what.join(", ")),
    }
}

/// The apt options that keep every piece of apt state private to `apt`.
fn apt_options(apt: &Path) -> Vec<String> {
    let p = |x: &str| apt.join(x).to_string_lossy().to_string();
    vec![
        "-o".into(),
        format!("Dir::Etc::SourceList={}", p("sources.list")),
        "-o".into(),
        format!("Dir::Etc::SourceParts={}", p("sources.list.d")),
        "-o".into(),
        format!("Dir::State::Lists={}", p("lists")),
        "-o".into(),
        format!("Dir::Cache={}", p("cache")),
        // only the Packages indices: no translations, no AppStream metadata
        "-o".into(),
        "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
        "-o".into(),
        "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".into(),
        "-o".into(),
        "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".into(),
        "-o".into(),
        "Acquire::Languages=none".into(),
        // the downloads go to a root-owned directory
        "-o".into(),
        "APT::Sandbox::User=root".into(),
        "-q".into(),
    ]
}

/// The sources list of one suite on `mirror`, signed by Debian's archive keyring.
pub fn sources_list(mirror: &str, suite: &str) -> String {
    format!(
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {} {suite} main\n",
        mirror.trim_end_matches('/')
    )
}

fn apt(step: &str, program: &str, opts: &[String], args: &[&str], cwd: &Path) -> Result<String> {
    let out = Command::new(program)
        .args(opts)
        .args(args)
        .current_dir(cwd)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| SandboxError::Command {
            step: step.into(),
            command: format!("{program} {}", args.join(" ")),
            status: "not started".into(),
            output: e.to_string(),
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        let mut all = stdout;
        all.push_str(&String::from_utf8_lossy(&out.stderr));
        let lines: Vec<&str> = all.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        return Err(SandboxError::Command {
            step: step.into(),
            command: format!("{program} {}", args.join(" ")),
            status: out.status.to_string(),
            output: tail,
        });
    }
    Ok(stdout)
}

/// The newest version of `package` that `apt-cache madison` lists from `suite`.
pub fn newest_in_madison(madison: &str, package: &str, suite: &str) -> Option<String> {
    // "docker.io | 28.5.2+dfsg4-5 | http://deb.debian.org/debian sid/main amd64 Packages"
    madison
        .lines()
        .filter_map(|l| {
            let mut f = l.split('|').map(str::trim);
            let (p, v, src) = (f.next()?, f.next()?, f.next()?);
            (p == package
                && src
                    .split_whitespace()
                    .any(|w| w.starts_with(&format!("{suite}/"))))
            .then(|| v.to_string())
        })
        .next()
}

fn fetch(suite: &str, cache_dir: &Path, mirror: &str) -> Result<EngineBins> {
    let apt_root = apt_dir(cache_dir, suite);
    for d in [
        "lists/partial",
        "cache/archives/partial",
        "sources.list.d",
        "download",
    ] {
        let d = apt_root.join(d);
        std::fs::create_dir_all(&d).map_err(|e| SandboxError::io("engine fetch", &d, e))?;
    }
    // one fetch at a time per cache (two sandboxes coming up together share it)
    let lock = cache_dir.join("engines").join(format!("{suite}.lock"));
    let _lock = sys::lock_file(&lock)?;
    let list = apt_root.join("sources.list");
    std::fs::write(&list, sources_list(mirror, suite))
        .map_err(|e| SandboxError::io("engine fetch", &list, e))?;
    let opts = apt_options(&apt_root);
    let what = || format!("{} from Debian {suite} at {mirror}", PACKAGES.join(" and "));
    if let Err(e) = apt(
        "engine fetch",
        "apt-get",
        &opts,
        &["update", "--error-on=any"],
        &apt_root,
    ) {
        // offline: the newest complete extraction of this suite, if any
        if let Some((dir, versions)) = newest_complete(cache_dir, suite) {
            eprintln!(
                "ccci-sandbox: cannot refresh Debian {suite} ({e}); using the cached {}",
                dir.display()
            );
            return Ok(bins_of(&dir, suite, &versions));
        }
        return Err(SandboxError::EngineFetch {
            what: what(),
            reason: e.to_string(),
        });
    }
    let madison = apt(
        "engine fetch",
        "apt-cache",
        &opts,
        &[&["madison"][..], &PACKAGES[..]].concat(),
        &apt_root,
    )
    .map_err(|e| SandboxError::EngineFetch {
        what: what(),
        reason: e.to_string(),
    })?;
    let mut versions = Vec::new();
    for p in PACKAGES {
        let v = newest_in_madison(&madison, p, suite).ok_or_else(|| SandboxError::EngineFetch {
            what: format!("{p} from Debian {suite} at {mirror}"),
            reason: format!("Debian {suite} lists no `{p}` for this architecture"),
        })?;
        versions.push((p.to_string(), v));
    }
    let dir = extract_dir(cache_dir, suite, &versions);
    if dir.join(COMPLETE).is_file() {
        return Ok(bins_of(&dir, suite, &versions));
    }
    let dl = apt_root.join("download");
    // old downloads go: the directory holds only this fetch's .debs
    if let Ok(rd) = std::fs::read_dir(&dl) {
        for e in rd.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    for (p, v) in &versions {
        apt(
            "engine fetch",
            "apt-get",
            &opts,
            &["download", &format!("{p}={v}")],
            &dl,
        )
        .map_err(|e| SandboxError::EngineFetch {
            what: format!("{p} {v} from Debian {suite} at {mirror}"),
            reason: e.to_string(),
        })?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| SandboxError::io("engine fetch", &dir, e))?;
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&dl)
        .map_err(|e| SandboxError::io("engine fetch", &dl, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    debs.sort();
    for deb in &debs {
        sys::run(
            "engine unpack",
            &["dpkg", "-x", &deb.to_string_lossy(), &dir.to_string_lossy()],
        )?;
    }
    for bin in [
        "usr/sbin/dockerd",
        "usr/bin/containerd",
        "usr/bin/containerd-shim-runc-v2",
    ] {
        if !dir.join(bin).is_file() {
            return Err(SandboxError::EngineFetch {
                what: what(),
                reason: format!("the unpacked packages have no /{bin}"),
            });
        }
    }
    let marker: Vec<String> = versions.iter().map(|(p, v)| format!("{p}={v}")).collect();
    std::fs::write(dir.join(COMPLETE), marker.join("\n") + "\n")
        .map_err(|e| SandboxError::io("engine fetch", &dir, e))?;
    for deb in debs {
        let _ = std::fs::remove_file(deb);
    }
    Ok(bins_of(&dir, suite, &versions))
}

/// Package versions, `(package, version)`.
type Versions = Vec<(String, String)>;

/// The most recently completed extraction of `suite` in the cache, with its versions.
fn newest_complete(cache_dir: &Path, suite: &str) -> Option<(PathBuf, Versions)> {
    let mut found: Vec<(std::time::SystemTime, PathBuf, Versions)> =
        std::fs::read_dir(cache_dir.join("engines"))
            .ok()?
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{suite}-"))
            })
            .filter_map(|e| {
                let m = e.path().join(COMPLETE);
                let text = std::fs::read_to_string(&m).ok()?;
                let t = std::fs::metadata(&m).ok()?.modified().ok()?;
                let versions = text
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(p, v)| (p.to_string(), v.to_string()))
                    .collect();
                Some((t, e.path(), versions))
            })
            .collect();
    found.sort_by_key(|(t, _, _)| *t);
    found.pop().map(|(_, d, v)| (d, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn madison_newest_of_the_suite() {
        let m = "docker.io | 28.5.2+dfsg4-5 | http://deb.debian.org/debian sid/main amd64 Packages\n\
                 docker.io | 20.10.24+dfsg1-1+deb12u1+b6 | http://deb.debian.org/debian bookworm/main amd64 Packages\n\
                 containerd | 2.1.9+ds1-5 | http://deb.debian.org/debian sid/main amd64 Packages\n";
        assert_eq!(
            newest_in_madison(m, "docker.io", "sid").as_deref(),
            Some("28.5.2+dfsg4-5")
        );
        assert_eq!(
            newest_in_madison(m, "containerd", "sid").as_deref(),
            Some("2.1.9+ds1-5")
        );
        assert_eq!(newest_in_madison(m, "containerd", "trixie"), None);
        assert_eq!(newest_in_madison(m, "docker", "sid"), None);
    }

    #[test]
    fn private_sources_of_one_suite() {
        assert_eq!(
            sources_list("http://deb.debian.org/debian/", "trixie"),
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main\n"
        );
        let o = apt_options(Path::new("/c/engines/apt-sid")).join(" ");
        assert!(
            o.contains("Dir::Etc::SourceList=/c/engines/apt-sid/sources.list"),
            "{o}"
        );
        assert!(
            o.contains("Dir::State::Lists=/c/engines/apt-sid/lists"),
            "{o}"
        );
        assert!(o.contains("Dir::Cache=/c/engines/apt-sid/cache"), "{o}");
    }

    /// A mirror that does not answer and an empty cache: the error names the packages, the
    /// suite and the mirror, and what apt said.
    #[test]
    fn an_unreachable_mirror_names_what_could_not_be_fetched() {
        // without apt-get nothing is fetched and the claim is not shown: a failure, not a pass
        assert!(
            sys::which("apt-get").is_some(),
            "apt-get is needed to show this (the sandbox fetches engines with Debian's apt; .ci/deps)"
        );
        let t = tempfile::tempdir().unwrap();
        let e = ensure(&Engine::Sid, t.path(), "http://127.0.0.1:9/debian").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "cannot fetch the engine: docker.io and containerd from Debian sid at http://127.0.0.1:9/debian: "
            ),
            "{msg}"
        );
        assert!(matches!(e, SandboxError::EngineFetch { .. }));
    }

    #[test]
    fn a_directory_engine_must_hold_the_daemons() {
        let t = tempfile::tempdir().unwrap();
        let e = ensure(&Engine::Path(t.path().into()), t.path(), "x").unwrap_err();
        assert!(e.to_string().contains("has no `dockerd`"), "{e}");
        for b in ["dockerd", "containerd", "containerd-shim-runc-v2"] {
            std::fs::write(t.path().join(b), "").unwrap();
        }
        let bins = ensure(&Engine::Path(t.path().into()), t.path(), "x").unwrap();
        assert_eq!(bins.dockerd, t.path().join("dockerd"));
        assert!(bins.path_env().starts_with(&*t.path().to_string_lossy()));
    }
}
