//! `deploy`: install the prune binary, units, the deployed source tree and a Docker client
//! config into the systemd host through the API, then `daemon-reload` and `enable --now` the
//! timers. Idempotent, serialised with `up`/`down`.

use bollard::query_parameters::UploadToContainerOptionsBuilder;
use bollard::Docker;
use sha2::{Digest, Sha256};

use crate::error::{Result, SandboxError};
use crate::host::exec;
use crate::{sys, Deploy, SandboxInfo};

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
        add("usr/local/bin/ci-docker-prune", 0o755, &data, false)?;
    }
    for (name, text) in &d.units {
        if name.is_empty() || name.contains('/') {
            return Err(SandboxError::Config(format!("bad unit file name {name:?}")));
        }
        add(
            &format!("etc/systemd/system/{name}"),
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
        add("root/.docker", 0o700, &[], true)?;
        add("root/.docker/config.json", 0o600, cfg.as_bytes(), false)?;
    }
    b.into_inner()
        .map_err(|e| SandboxError::Image(format!("deploy tar: {e}")))
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

/// Where the host remembers what was deployed last (a digest of the whole `Deploy`).
const DEPLOY_MARKER: &str = "/var/lib/ccci-sandbox/deployed.sha256";

/// Install `d` into the host: files, `systemctl daemon-reload`, `enable --now` of every timer.
/// Serialised with `up`/`down` by the sandbox lock; a deploy identical to the last one (same
/// digest) only re-checks that the timers are enabled, so concurrent test processes never pull
/// the deployed tree from under each other.
pub(crate) async fn deploy(info: &SandboxInfo, d: &Deploy) -> Result<()> {
    let lock_path = crate::lifecycle::lock_path_of_info(info);
    let _lock = tokio::task::spawn_blocking(move || sys::lock_file(&lock_path))
        .await
        .map_err(|e| SandboxError::Config(format!("lock task: {e}")))??;
    let docker = info.docker_negotiated().await?;
    let digest = deploy_digest(d)?;
    let (_, have) = exec(&docker, &info.host_container, &["cat", DEPLOY_MARKER]).await?;
    if have.trim() != digest {
        let tar = deploy_tar(d)?;
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
        run_checked(&docker, info, &["systemctl", "daemon-reload"]).await?;
    }
    for (name, _) in &d.units {
        if name.ends_with(".timer") {
            run_checked(&docker, info, &["systemctl", "enable", "--now", name]).await?;
        }
    }
    if have.trim() != digest {
        run_checked(&docker, info, &["mkdir", "-p", "/var/lib/ccci-sandbox"]).await?;
        let marker = format!("{digest}\n");
        let mut b = tar::Builder::new(Vec::new());
        let mut hd = tar::Header::new_gnu();
        hd.set_mode(0o644);
        hd.set_size(marker.len() as u64);
        hd.set_entry_type(tar::EntryType::Regular);
        b.append_data(
            &mut hd,
            DEPLOY_MARKER.trim_start_matches('/'),
            marker.as_bytes(),
        )
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
