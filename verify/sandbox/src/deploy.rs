//! What gets deployed into the systemd host and how: the [`Deploy`] value (the prune binary,
//! the portable units this build ships, a repository's `nix/` tree as the deployed source tree,
//! a Docker client config) with the one prune-binary lookup the CLI and the tests share, and
//! `deploy`, which installs it through the API, then `daemon-reload`s and `enable --now`s the
//! timers. Idempotent, serialised with `up`/`down`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use bollard::query_parameters::UploadToContainerOptionsBuilder;
use bollard::Docker;
use sha2::{Digest, Sha256};

use crate::error::{Result, SandboxError};
use crate::host::exec;
use crate::layout::{in_host, Layout};
use crate::nixos::Entry;
use crate::{sys, Flavour, SandboxInfo};

/// The portable units, built in so a sandbox gets what this build ships: `(file name, text)`.
pub const PORTABLE_UNITS: &[(&str, &str)] = &[
    (
        "ci-docker-prune.service",
        include_str!("../../../prune/systemd/ci-docker-prune.service"),
    ),
    (
        "ci-docker-prune.timer",
        include_str!("../../../prune/systemd/ci-docker-prune.timer"),
    ),
];

/// The environment variable that names the prune binary to deploy, overriding any lookup.
pub const PRUNE_BIN_ENV: &str = "CCCI_PRUNE_BIN";

/// The `ci-docker-prune` binary to deploy: `CCCI_PRUNE_BIN` when it is set (it must name a
/// file), else the first of `candidates` that is a file, else `None`. Callers bring their own
/// candidates (next to the executable, PATH, a cargo target dir, ...).
pub fn find_prune_bin(candidates: impl IntoIterator<Item = PathBuf>) -> Result<Option<PathBuf>> {
    if let Some(p) = std::env::var_os(PRUNE_BIN_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(Some(p))
        } else {
            Err(SandboxError::PruneBinNotAFile(p))
        };
    }
    Ok(candidates.into_iter().find(|p| p.is_file()))
}

/// What to install into the systemd host container.
#[derive(Clone, Debug)]
pub struct Deploy {
    /// The `ci-docker-prune` binary, installed at `/usr/local/bin/ci-docker-prune`.
    pub prune_bin: Option<PathBuf>,
    /// `(file name, contents)` for `/etc/systemd/system`; every `.timer` is `enable --now`ed.
    pub units: Vec<(String, String)>,
    /// `(relative path, bytes)` copied under `deployed_tree`.
    pub source_tree: Vec<(String, Vec<u8>)>,
    /// Where the deployed source tree lives in the host (default `/root/cc-ci`).
    pub deployed_tree: String,
    /// Contents of `/root/.docker/config.json` (mode 0600), or none.
    pub docker_config: Option<String>,
    /// The repository the `nixos` flavour renders its units from (its module, with
    /// `nix/eval/nixos-units.nix`) and builds its system stand-in from; unused on `debian`.
    pub repo: Option<PathBuf>,
    /// `nixos` flavour only: also install autoPrune's `docker-prune.timer`, as
    /// `virtualisation.docker.autoPrune.enable = true` would (a wrong state for tests).
    pub nixos_auto_prune: bool,
    /// `nixos` flavour only: the module's option values (NixOS option values as JSON, e.g.
    /// `{"services":{"ci-docker-prune":{"enable":true,"threshold":70}}}`) the units are
    /// rendered with, as a host configuration that sets them gives; `None`: the renderer's
    /// default (the module enabled, every option at its default).
    pub nixos_settings: Option<String>,
}

impl Default for Deploy {
    fn default() -> Self {
        Deploy {
            prune_bin: None,
            units: Vec::new(),
            source_tree: Vec::new(),
            deployed_tree: in_host::DEPLOYED_TREE.to_string(),
            docker_config: None,
            repo: None,
            nixos_auto_prune: false,
            nixos_settings: None,
        }
    }
}

impl Deploy {
    /// What a sandbox runs for repository `repo`: `prune_bin`, the [`PORTABLE_UNITS`], the
    /// repository's `nix/` tree as the deployed source tree (an error when it has none) and
    /// the [sandbox credential](Self::sandbox_docker_config).
    pub fn for_repo(repo: &Path, prune_bin: PathBuf) -> Result<Deploy> {
        let source_tree =
            Self::tree_from_dir(repo, "nix").map_err(|e| SandboxError::SourceTree {
                repo: repo.to_path_buf(),
                source: Box::new(e),
            })?;
        if source_tree.is_empty() {
            return Err(SandboxError::NoSourceTree(repo.to_path_buf()));
        }
        Ok(Deploy {
            prune_bin: Some(prune_bin),
            units: Self::portable_units(),
            source_tree,
            docker_config: Some(Self::sandbox_docker_config()),
            repo: Some(repo.to_path_buf()),
            ..Default::default()
        })
    }

    /// The [`PORTABLE_UNITS`] as owned `(file name, text)` pairs.
    pub fn portable_units() -> Vec<(String, String)> {
        PORTABLE_UNITS
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    /// Units read from a directory (`*.service`, `*.timer`, `*.path`, `*.socket`); a missing
    /// directory gives none.
    pub fn units_from_dir(dir: &Path) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(SandboxError::io("deploy", dir, e)),
        };
        for ent in rd {
            let ent = ent.map_err(|e| SandboxError::io("deploy", dir, e))?;
            let name = ent.file_name().to_string_lossy().to_string();
            let is_unit = [".service", ".timer", ".path", ".socket"]
                .iter()
                .any(|s| name.ends_with(s));
            if is_unit && ent.path().is_file() {
                let text = std::fs::read_to_string(ent.path())
                    .map_err(|e| SandboxError::io("deploy", ent.path(), e))?;
                out.push((name, text));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every file under `root/sub` as `(path relative to root, bytes)`; missing gives none.
    pub fn tree_from_dir(root: &Path, sub: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        let start = root.join(sub);
        if !start.exists() {
            return Ok(out);
        }
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let rd = std::fs::read_dir(&dir).map_err(|e| SandboxError::io("deploy", &dir, e))?;
            for ent in rd {
                let ent = ent.map_err(|e| SandboxError::io("deploy", &dir, e))?;
                let p = ent.path();
                let ft = ent
                    .file_type()
                    .map_err(|e| SandboxError::io("deploy", &p, e))?;
                if ft.is_dir() {
                    stack.push(p);
                } else if ft.is_file() {
                    let rel = p
                        .strip_prefix(root)
                        .map_err(|_| SandboxError::Config(format!("{} outside root", p.display())))?
                        .to_string_lossy()
                        .to_string();
                    let bytes = std::fs::read(&p).map_err(|e| SandboxError::io("deploy", &p, e))?;
                    out.push((rel, bytes));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// A Docker client config for the sandbox host: the sandbox user's credential for the
    /// sandbox's authenticated registry ([`crate::registry_auth`]), the stand-in for cc-ci's
    /// Docker Hub token, so `auth.daemon-authenticated` has a file to inspect and a registry
    /// that says whether it is accepted. Not a real secret; never printed.
    pub fn sandbox_docker_config() -> String {
        use crate::registry_auth::{AUTH_REGISTRY_ADDR, SECRET, USER};
        let auth = base64(format!("{USER}:{SECRET}").as_bytes());
        format!("{{\n  \"auths\": {{\n    \"{AUTH_REGISTRY_ADDR}\": {{\n      \"auth\": \"{auth}\"\n    }}\n  }}\n}}\n")
    }
}

/// Standard base64 with padding, as Docker's `auth` field wants it.
fn base64(input: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(input)
}

/// `path` inside the host as a tar entry name (relative to `/`).
fn entry(path: &str) -> &str {
    path.trim_start_matches('/')
}

fn deploy_tar(d: &Deploy) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, data: &[u8], dir: bool| -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        );
        if dir {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
        }
        b.append_data(&mut h, path, data)
            .map_err(|e| SandboxError::Image(format!("deploy tar {path}: {e}")))
    };
    if let Some(bin) = &d.prune_bin {
        let data = std::fs::read(bin).map_err(|e| SandboxError::io("deploy", bin, e))?;
        add(entry(in_host::PRUNE_BIN), 0o755, &data, false)?;
    }
    for (name, text) in &d.units {
        if name.is_empty() || name.contains('/') {
            return Err(SandboxError::Config(format!("bad unit file name {name:?}")));
        }
        add(
            &format!("{}/{name}", entry(in_host::UNIT_DIR)),
            0o644,
            text.as_bytes(),
            false,
        )?;
    }
    let tree = d.deployed_tree.trim_matches('/');
    if tree.is_empty() || tree.split('/').any(|c| c == ".." || c.is_empty()) {
        return Err(SandboxError::Config(format!(
            "bad deployed_tree {:?}",
            d.deployed_tree
        )));
    }
    for (rel, data) in &d.source_tree {
        let rel = rel.trim_start_matches('/');
        if rel.is_empty() || rel.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(SandboxError::Config(format!("bad source path {rel:?}")));
        }
        add(&format!("{tree}/{rel}"), 0o644, data, false)?;
    }
    if let Some(cfg) = &d.docker_config {
        add(entry(in_host::DOCKER_CONFIG_DIR), 0o700, &[], true)?;
        add(entry(in_host::DOCKER_CONFIG), 0o600, cfg.as_bytes(), false)?;
    }
    b.into_inner()
        .map_err(|e| SandboxError::Image(format!("deploy tar: {e}")))
}

/// The `nixos` flavour's files ([`crate::nixos::entries`]) and the deployed source tree.
fn nixos_tar(d: &Deploy, entries: &[Entry]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut dirs_done = std::collections::BTreeSet::new();
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(now);
        // parents of store paths and links: plain 0755 directories
        let path = match e {
            Entry::File { path, .. } | Entry::Dir { path, .. } | Entry::Link { path, .. } => path,
        };
        let mut parent = std::path::Path::new(path).parent();
        let mut parents = Vec::new();
        while let Some(p) = parent.filter(|p| p.as_os_str().len() > 1) {
            parents.push(p.to_string_lossy().to_string());
            parent = p.parent();
        }
        for p in parents.into_iter().rev() {
            let explicit = entries
                .iter()
                .any(|x| matches!(x, Entry::Dir { path, .. } if *path == p));
            if !explicit
                && dirs_done.insert(p.clone())
                && !matches!(
                    p.as_str(),
                    "/etc" | "/root" | "/run" | "/etc/systemd" | "/etc/systemd/system"
                )
            {
                let mut hd = tar::Header::new_gnu();
                hd.set_mode(0o755);
                hd.set_mtime(now);
                hd.set_entry_type(tar::EntryType::Directory);
                hd.set_size(0);
                b.append_data(&mut hd, entry(&p), std::io::empty())
                    .map_err(|e| SandboxError::Image(format!("deploy tar {p}: {e}")))?;
            }
        }
        let r = match e {
            Entry::File { path, mode, data } => {
                h.set_mode(*mode);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, entry(path), data.as_slice())
            }
            Entry::Dir { path, mode } => {
                dirs_done.insert(path.clone());
                h.set_mode(*mode);
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, entry(path), std::io::empty())
            }
            Entry::Link { path, target } => {
                h.set_mode(0o777);
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, entry(path), target)
            }
        };
        r.map_err(|e| SandboxError::Image(format!("deploy tar {path}: {e}")))?;
    }
    let tree = d.deployed_tree.trim_matches('/');
    for (rel, data) in &d.source_tree {
        let rel = rel.trim_start_matches('/');
        if rel.is_empty() || rel.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(SandboxError::Config(format!("bad source path {rel:?}")));
        }
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(now);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, format!("{tree}/{rel}"), data.as_slice())
            .map_err(|e| SandboxError::Image(format!("deploy tar {rel}: {e}")))?;
    }
    b.into_inner()
        .map_err(|e| SandboxError::Image(format!("deploy tar: {e}")))
}

fn entries_digest(d: &Deploy, entries: &[Entry]) -> String {
    let mut h = Sha256::new();
    h.update(b"nixos\0");
    for e in entries {
        match e {
            Entry::File { path, mode, data } => {
                h.update(format!("f\0{path}\0{mode:o}\0{}\0", data.len()).as_bytes());
                h.update(Sha256::digest(data));
            }
            Entry::Dir { path, mode } => h.update(format!("d\0{path}\0{mode:o}\0").as_bytes()),
            Entry::Link { path, target } => h.update(format!("l\0{path}\0{target}\0").as_bytes()),
        }
    }
    h.update(format!("tree\0{}\0", d.deployed_tree).as_bytes());
    for (p, b) in &d.source_tree {
        h.update(format!("file\0{p}\0{}\0", b.len()).as_bytes());
        h.update(b);
    }
    hex::encode(h.finalize())
}

fn deploy_digest(d: &Deploy) -> Result<String> {
    let mut h = Sha256::new();
    if let Some(bin) = &d.prune_bin {
        let data = std::fs::read(bin).map_err(|e| SandboxError::io("deploy", bin, e))?;
        h.update(b"bin\0");
        h.update(Sha256::digest(&data));
    }
    for (n, t) in &d.units {
        h.update(format!("unit\0{n}\0{}\0", t.len()).as_bytes());
        h.update(t.as_bytes());
    }
    h.update(format!("tree\0{}\0", d.deployed_tree).as_bytes());
    for (p, b) in &d.source_tree {
        h.update(format!("file\0{p}\0{}\0", b.len()).as_bytes());
        h.update(b);
    }
    if let Some(c) = &d.docker_config {
        h.update(format!("cfg\0{}\0", c.len()).as_bytes());
        h.update(c.as_bytes());
    }
    Ok(hex::encode(h.finalize()))
}

/// Install `d` into the host: files, `systemctl daemon-reload`, `enable --now` of every timer.
/// Serialised with `up`/`down` by the sandbox lock; a deploy identical to the last one (same
/// digest) only re-checks that the timers are enabled, so concurrent test processes never pull
/// the deployed tree from under each other.
pub(crate) async fn deploy(info: &SandboxInfo, d: &Deploy) -> Result<()> {
    let lock_path = Layout::of_info(info).lock();
    let _lock = tokio::task::spawn_blocking(move || sys::lock_file(&lock_path))
        .await
        .map_err(|e| SandboxError::Config(format!("lock task: {e}")))??;
    let docker = info.docker_negotiated().await?;
    let nixos = match info.shape.flavour {
        Flavour::Debian => None,
        Flavour::Nixos => {
            let repo = d.repo.clone().ok_or_else(|| {
                SandboxError::Config(
                    "the nixos flavour renders its units from a repository: Deploy.repo is not set"
                        .into(),
                )
            })?;
            let bin = match &d.prune_bin {
                Some(p) => Some(std::fs::read(p).map_err(|e| SandboxError::io("deploy", p, e))?),
                None => None,
            };
            let cfg = d.docker_config.clone();
            let auto = d.nixos_auto_prune;
            let settings = d.nixos_settings.clone();
            Some(
                tokio::task::spawn_blocking(move || {
                    crate::nixos::entries(
                        &repo,
                        bin.as_deref(),
                        cfg.as_deref(),
                        auto,
                        settings.as_deref(),
                    )
                })
                .await
                .map_err(|e| SandboxError::Config(format!("render task: {e}")))??,
            )
        }
    };
    let digest = match &nixos {
        None => deploy_digest(d)?,
        Some((entries, _)) => entries_digest(d, entries),
    };
    let (_, have) = exec(
        &docker,
        &info.host_container,
        &["cat", in_host::DEPLOY_MARKER],
    )
    .await?;
    if have.trim() != digest {
        let tar = match &nixos {
            None => deploy_tar(d)?,
            Some((entries, _)) => {
                // the previous system's source and the links an earlier deploy made (a unit
                // no longer in the system, e.g. autoPrune's timer, goes with them)
                run_checked(&docker, info, &["sh", "-c", crate::nixos::CLEAN_SCRIPT]).await?;
                nixos_tar(d, entries)?
            }
        };
        let tree = format!("/{}", d.deployed_tree.trim_matches('/'));
        // Replace the deployed tree as a whole, so files deleted in git disappear here too.
        if !d.source_tree.is_empty() {
            run_checked(&docker, info, &["rm", "-rf", "--", &tree]).await?;
        }
        docker
            .upload_to_container(
                &info.host_container,
                Some(UploadToContainerOptionsBuilder::default().path("/").build()),
                bollard::body_full(tar.into()),
            )
            .await
            .map_err(|e| SandboxError::docker("deploy upload", e))?;
        if nixos.is_some() {
            // the switch: build the system, point /etc/static and /run/current-system at it
            let script = crate::nixos::activate_script(d.nixos_auto_prune);
            run_checked(&docker, info, &["sh", "-c", &script]).await?;
        }
        run_checked(&docker, info, &["systemctl", "daemon-reload"]).await?;
    }
    match &nixos {
        None => {
            for (name, _) in &d.units {
                if name.ends_with(".timer") {
                    run_checked(&docker, info, &["systemctl", "enable", "--now", name]).await?;
                }
            }
        }
        // NixOS's switch starts what a target wants; units carry no [Install] to enable
        Some((_, timers)) => {
            for name in timers {
                run_checked(&docker, info, &["systemctl", "start", name]).await?;
            }
        }
    }
    if have.trim() != digest {
        run_checked(&docker, info, &["mkdir", "-p", in_host::STATE_DIR]).await?;
        let marker = format!("{digest}\n");
        let mut b = tar::Builder::new(Vec::new());
        let mut hd = tar::Header::new_gnu();
        hd.set_mode(0o644);
        hd.set_size(marker.len() as u64);
        hd.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut hd, entry(in_host::DEPLOY_MARKER), marker.as_bytes())
            .map_err(|e| SandboxError::Image(format!("deploy marker: {e}")))?;
        let t = b
            .into_inner()
            .map_err(|e| SandboxError::Image(format!("deploy marker: {e}")))?;
        docker
            .upload_to_container(
                &info.host_container,
                Some(UploadToContainerOptionsBuilder::default().path("/").build()),
                bollard::body_full(t.into()),
            )
            .await
            .map_err(|e| SandboxError::docker("deploy marker", e))?;
    }
    Ok(())
}

async fn run_checked(docker: &Docker, info: &SandboxInfo, argv: &[&str]) -> Result<String> {
    let (code, out) = exec(docker, &info.host_container, argv).await?;
    if code != 0 {
        return Err(SandboxError::Deploy {
            container: info.host_container.clone(),
            command: argv.join(" "),
            exit: code,
            output: out,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert!(Deploy::sandbox_docker_config()
            .contains("\"auth\": \"Y2NjaS1zYW5kYm94OnNhbmRib3gtbm90LWEtcmVhbC1zZWNyZXQ=\""));
    }

    #[test]
    fn deploy_tar_rejects_escaping_paths() {
        let d = Deploy {
            source_tree: vec![("../etc/passwd".into(), b"x".to_vec())],
            ..Default::default()
        };
        assert!(deploy_tar(&d).is_err());
        let d = Deploy {
            units: vec![("a/b.timer".into(), String::new())],
            ..Default::default()
        };
        assert!(deploy_tar(&d).is_err());
    }

    #[test]
    fn deploy_tar_sets_modes() {
        let d = Deploy {
            units: vec![("x.timer".into(), "[Timer]\n".into())],
            source_tree: vec![("nix/a.nix".into(), b"{}".to_vec())],
            docker_config: Some("{}".into()),
            ..Default::default()
        };
        let t = deploy_tar(&d).unwrap();
        let mut ar = tar::Archive::new(t.as_slice());
        let mut seen = std::collections::BTreeMap::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            seen.insert(
                e.path().unwrap().to_string_lossy().to_string(),
                e.header().mode().unwrap(),
            );
        }
        assert_eq!(seen["etc/systemd/system/x.timer"], 0o644);
        assert_eq!(seen["root/cc-ci/nix/a.nix"], 0o644);
        assert_eq!(seen["root/.docker/config.json"], 0o600);
        assert_eq!(
            seen.get("root/.docker").or(seen.get("root/.docker/")),
            Some(&0o700)
        );
    }
}
