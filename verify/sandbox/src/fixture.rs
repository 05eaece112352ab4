//! The `redis:7-alpine` stand-in, and the registry helpers tests use to count layer downloads.
//!
//! No public image can be pulled here, so the fixture is written from scratch with the
//! [`images`](crate::images) builder, from Debian's own binaries, in three layers:
//! 1. busybox-static as `/bin/sh` & co. plus the shared libraries `redis-server` and
//!    `redis-cli` need (found with `ldd`), `/etc/passwd`, `/data`;
//! 2. `redis-server` and `redis-cli` (Debian's Redis 7);
//! 3. `/etc/redis.conf` (`bind 0.0.0.0`, `protected-mode no`, no persistence).
//!
//! It is pushed to the private registry as `library/redis:7-alpine` (so the daemon's
//! `--registry-mirror` serves `docker pull redis:7-alpine`) and removed from the local store, so
//! the first pull after `up` is cold. A marker in the registry storage, keyed by the image id
//! (which covers every byte of every layer), skips the push when the registry already holds it.

use std::path::{Path, PathBuf};

use bollard::query_parameters::{
    ListImagesOptionsBuilder, PushImageOptionsBuilder, RemoveImageOptions,
    RemoveImageOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;

use crate::error::{Result, SandboxError};
use crate::images::{self, ImageSpec, Layer};
use crate::layout::Layout;
use crate::{sys, SandboxInfo, REGISTRY_ADDR};

/// Repository of the fixture in the registry (Docker Hub's official-image namespace).
pub const REPOSITORY: &str = "library/redis";
/// Tag of the fixture.
pub const TAG: &str = "7-alpine";
/// `created` of the fixture: weeks in the past, as a real `redis:7-alpine` is, so `until=24h`
/// never protects it.
pub const CREATED: &str = "2024-01-09T00:00:00Z";

/// `/etc/redis.conf` of the fixture (layer 3).
const REDIS_CONF: &str = include_str!("../../../fixtures/images/redis-7-alpine/redis.conf");

const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "nc", "ps", "sleep", "env", "id", "mkdir", "rm", "wget", "grep",
    "hostname", "true", "false", "test", "uname",
];

/// Shared libraries (and the loader) that `binary` needs, as (path in image, host path).
fn needed_libs(binary: &Path) -> Result<Vec<(String, PathBuf)>> {
    let b = binary.to_string_lossy().to_string();
    let out = sys::run("fixture (ldd)", &["ldd", &b])?;
    let mut libs = Vec::new();
    for line in out.lines() {
        let line = line.trim();
        let path = if let Some((_, rhs)) = line.split_once("=>") {
            rhs.split_whitespace().next().unwrap_or("")
        } else {
            line.split_whitespace().next().unwrap_or("")
        };
        if path.starts_with('/') {
            libs.push((path.to_string(), PathBuf::from(path)));
        }
    }
    if libs.is_empty() {
        return Err(SandboxError::Image(format!(
            "ldd {b} listed no libraries: {out}"
        )));
    }
    Ok(libs)
}

/// The fixture image spec (reads busybox, redis and their libraries from the host).
pub fn redis_spec() -> Result<ImageSpec> {
    let find = |p: &str, pkg: &str| {
        sys::which(p).ok_or_else(|| SandboxError::MissingPrerequisite {
            program: p.into(),
            package: pkg.into(),
        })
    };
    let busybox = find("busybox", "busybox-static")?;
    let server = find("redis-server", "redis-server")?;
    let cli = find("redis-cli", "redis-tools")?;

    let mut base = Layer::new()
        .created_by("busybox-static + glibc and the libraries redis needs")
        .host_file("/bin/busybox", &busybox)?;
    for a in BUSYBOX_APPLETS {
        base = base.symlink(&format!("/bin/{a}"), "busybox")?;
    }
    let mut libs = needed_libs(&server)?;
    libs.extend(needed_libs(&cli)?);
    libs.sort();
    libs.dedup();
    for (dest, src) in libs {
        base = base.host_file(&dest, &src)?;
    }
    base = base
        .file(
            "/etc/passwd",
            0o644,
            "root:x:0:0:root:/root:/bin/sh\nredis:x:999:999:redis:/data:/bin/false\n",
        )?
        .file("/etc/group", 0o644, "root:x:0:\nredis:x:999:\n")?
        .dir("/data", 0o777)?
        .dir("/tmp", 0o1777)?
        .dir("/root", 0o700)?;

    let bins = Layer::new()
        .created_by("redis-server and redis-cli from Debian's redis 7")
        .host_file("/usr/bin/redis-server", &server)?
        .host_file("/usr/bin/redis-cli", &cli)?;

    let conf = Layer::new()
        .created_by("redis.conf: bind 0.0.0.0, protected-mode no")
        .file("/etc/redis.conf", 0o644, REDIS_CONF)?;

    let mut spec = ImageSpec::new(vec![base, bins, conf], CREATED);
    spec.cmd = vec!["redis-server".into(), "/etc/redis.conf".into()];
    spec.exposed_ports = vec!["6379/tcp".into()];
    spec.working_dir = Some("/data".into());
    spec.labels.insert(
        "io.ccci.fixture".into(),
        "redis:7-alpine stand-in built from Debian's redis-server".into(),
    );
    Ok(spec)
}

/// `127.0.0.1:5000/library/redis:7-alpine`.
pub fn registry_ref() -> String {
    format!("{REGISTRY_ADDR}/{REPOSITORY}:{TAG}")
}

fn marker_path(info: &SandboxInfo) -> PathBuf {
    Layout::of_info(info).fixture_marker()
}

/// Push the fixture to the registry unless it already holds this exact image; make sure the
/// daemon's local store does not have it afterwards.
pub(crate) async fn ensure_pushed(docker: &Docker, info: &SandboxInfo) -> Result<()> {
    let spec = tokio::task::spawn_blocking(redis_spec)
        .await
        .map_err(|e| SandboxError::Image(format!("fixture task: {e}")))??;
    let built = tokio::task::spawn_blocking(move || spec.tag(&registry_ref()).build())
        .await
        .map_err(|e| SandboxError::Image(format!("fixture task: {e}")))??;
    let marker = marker_path(info);
    let have = std::fs::read_to_string(&marker).unwrap_or_default();
    if have.trim() == built.id && !registry_manifest_layers(info, REPOSITORY, TAG)?.is_empty() {
        // nothing was loaded; still make sure the store has no name of it (cold or warm, the
        // first pull after `up` is cold)
        remove_local_fixture(docker).await?;
        return Ok(());
    }
    let id = built.id.clone();
    images::load_archive(docker, built.archive).await?;
    let mut push = docker.push_image(
        &format!("{REGISTRY_ADDR}/{REPOSITORY}"),
        Some(PushImageOptionsBuilder::default().tag(TAG).build()),
        None,
    );
    while let Some(item) = push.next().await {
        let item = item.map_err(|e| SandboxError::StartFailed {
            step: "fixture push".into(),
            reason: e.to_string(),
            log: info.registry_log.clone(),
            log_tail: sys::log_tail(&info.registry_log, 20),
        })?;
        if let Some(err) = item.error_detail.and_then(|d| d.message) {
            return Err(SandboxError::StartFailed {
                step: "fixture push".into(),
                reason: err,
                log: info.registry_log.clone(),
                log_tail: sys::log_tail(&info.registry_log, 20),
            });
        }
    }
    // by the id we loaded, then by every name the daemon gave it (on the containerd store the
    // pushed `127.0.0.1:5000/library/redis:7-alpine` is a name of its own), checked empty
    remove_local(docker, &id).await?;
    remove_local_fixture(docker).await?;
    std::fs::write(&marker, format!("{id}\n"))
        .map_err(|e| SandboxError::io("fixture", &marker, e))?;
    Ok(())
}

/// Remove image `id` from the daemon's store under every name it has (tags and digests), so
/// the next pull of it is cold. Absent is fine. Each of its tags is removed by name first: on
/// the containerd image store an image *is* its names, and deleting one id can leave another
/// name (measured on Docker 28.5: the pushed `127.0.0.1:5000/library/redis:7-alpine` stayed
/// after a forced delete by the config id). Afterwards the image must be gone under every name
/// it had: one that stays is an error naming it.
pub async fn remove_local(docker: &Docker, id: &str) -> Result<()> {
    let names = local_names(docker, |img| same_id(&img.id, id)).await?;
    for name in names.iter().filter(|n| !n.contains('@')) {
        remove_name(docker, name).await?;
    }
    remove_name(docker, id).await?;
    let left = local_names(docker, |img| same_id(&img.id, id)).await?;
    if left.is_empty() && !image_exists(docker, id).await? {
        return Ok(());
    }
    Err(SandboxError::Image(format!(
        "image {id} is still in the daemon's store after its removal{}",
        if left.is_empty() {
            String::new()
        } else {
            format!(", as {}", left.join(", "))
        }
    )))
}

/// `true` when `listed` (an id as the image list gives it) is image `id` (with or without the
/// `sha256:` prefix).
fn same_id(listed: &str, id: &str) -> bool {
    listed.trim_start_matches("sha256:") == id.trim_start_matches("sha256:")
}

/// Remove one name (or id) from the local store, forced; absent is fine.
async fn remove_name(docker: &Docker, name: &str) -> Result<()> {
    match docker
        .remove_image(
            name,
            Some(RemoveImageOptionsBuilder::default().force(true).build()),
            None,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if ccci_host::docker_error::is_not_found(&e) => Ok(()),
        Err(e) => Err(SandboxError::docker("remove image", e)),
    }
}

async fn image_exists(docker: &Docker, id: &str) -> Result<bool> {
    match docker.inspect_image(id).await {
        Ok(_) => Ok(true),
        Err(e) if ccci_host::docker_error::is_not_found(&e) => Ok(false),
        Err(e) => Err(SandboxError::docker("inspect image", e)),
    }
}

/// Every name (tags, then repo digests) and the id of each local image `pick` selects.
async fn local_names(
    docker: &Docker,
    pick: impl Fn(&bollard::models::ImageSummary) -> bool,
) -> Result<Vec<String>> {
    let list = docker
        .list_images(Some(ListImagesOptionsBuilder::default().all(true).build()))
        .await
        .map_err(|e| SandboxError::docker("list images", e))?;
    Ok(list
        .iter()
        .filter(|img| pick(img))
        .flat_map(|img| {
            img.repo_tags
                .iter()
                .chain(img.repo_digests.iter())
                .filter(|n| n.as_str() != "<none>:<none>" && n.as_str() != "<none>@<none>")
                .cloned()
                .chain(std::iter::once(img.id.clone()))
        })
        .collect())
}

/// Is this local image the fixture: a `redis` name (tag or digest, any registry) or the
/// fixture's label.
fn is_fixture(img: &bollard::models::ImageSummary) -> bool {
    let named = img
        .repo_tags
        .iter()
        .chain(img.repo_digests.iter())
        .any(|n| {
            n.starts_with("redis:")
                || n.starts_with("redis@")
                || n.contains("/redis:")
                || n.contains("/redis@")
        });
    named || img.labels.contains_key("io.ccci.fixture")
}

/// Every name under which the daemon's local store has the fixture (empty: a pull of
/// `redis:7-alpine` is cold).
pub async fn local_fixture_names(docker: &Docker) -> Result<Vec<String>> {
    local_names(docker, is_fixture).await
}

/// What [`untag_local`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalTag {
    /// No local `redis:7-alpine` tag: the state a swarm deploy leaves.
    Absent,
    /// The tag was there and is gone (the image may have gone with it: the next deploy pulls
    /// it by digest).
    Removed,
    /// A container holds the tag; it stays (the daemon's answer).
    Held(String),
}

/// The fixture as a CI host has it: pulled by digest by a swarm deploy, with no tag. A pull by
/// tag (a test's, a person's `docker pull redis:7-alpine`, a pull of
/// `127.0.0.1:5000/library/redis:7-alpine`, a `docker tag` of it) leaves it tagged, and on a
/// host where the image is tagged `prune.keeps-deployed-images` cannot show its case (it
/// skips, by design). This removes every plain tag of every local image of the fixture (a
/// `redis` name or the fixture's label), without force, so a tag a container holds stays;
/// names pinned by digest (`redis:7-alpine@sha256:…`, how the containerd store names a swarm
/// pull) are how swarm leaves it and stay. `up_and_deploy` calls it on every `up`, the
/// sandbox's fast path included, and the tests before each whole-gate run on the sandbox.
pub async fn untag_local(docker: &Docker) -> Result<LocalTag> {
    let list = docker
        .list_images(Some(ListImagesOptionsBuilder::default().all(true).build()))
        .await
        .map_err(|e| SandboxError::docker("list images", e))?;
    let tags: Vec<String> = list
        .iter()
        .filter(|img| is_fixture(img))
        .flat_map(|img| img.repo_tags.iter())
        .filter(|t| !t.contains('@') && t.as_str() != "<none>:<none>")
        .cloned()
        .collect();
    let mut state = LocalTag::Absent;
    for tag in tags {
        match docker
            .remove_image(&tag, None::<RemoveImageOptions>, None)
            .await
        {
            Ok(_) => {
                if state == LocalTag::Absent {
                    state = LocalTag::Removed
                }
            }
            Err(e) if ccci_host::docker_error::is_not_found(&e) => {}
            Err(e) if ccci_host::docker_error::is_conflict(&e) => {
                if !matches!(state, LocalTag::Held(_)) {
                    state = LocalTag::Held(format!("{tag}: {e}"))
                }
            }
            Err(e) => return Err(SandboxError::docker("untag the fixture", e)),
        }
    }
    Ok(state)
}

/// Remove every local image that carries a `redis:7-alpine` name (tag or digest) of the
/// fixture or its label, under every name it has; returns the ids removed. Afterwards no local
/// name of the fixture may remain: one that does is an error naming it.
pub async fn remove_local_fixture(docker: &Docker) -> Result<Vec<String>> {
    let list = docker
        .list_images(Some(ListImagesOptionsBuilder::default().all(true).build()))
        .await
        .map_err(|e| SandboxError::docker("list images", e))?;
    let mut removed = Vec::new();
    for img in list.into_iter().filter(is_fixture) {
        remove_local(docker, &img.id).await?;
        removed.push(img.id);
    }
    let left = local_fixture_names(docker).await?;
    if !left.is_empty() {
        return Err(SandboxError::Image(format!(
            "the fixture is still in the daemon's local store after its removal, as {}: \
             the first pull of redis:7-alpine would not be cold",
            left.join(", ")
        )));
    }
    Ok(removed)
}

/// Layer digests of `repo:tag` in the sandbox registry (empty if it has no such manifest).
pub fn registry_manifest_layers(info: &SandboxInfo, repo: &str, tag: &str) -> Result<Vec<String>> {
    let (code, body) = sys::netns_http(
        &info.netns,
        &info.registry,
        "GET",
        &format!("/v2/{repo}/manifests/{tag}"),
        "application/vnd.docker.distribution.manifest.v2+json",
    )
    .map_err(|e| SandboxError::io("registry", &info.registry_log, e))?;
    if code == 404 {
        return Ok(Vec::new());
    }
    if code != 200 {
        return Err(SandboxError::Image(format!(
            "registry answered {code} for {repo}:{tag}: {body}"
        )));
    }
    let v: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| SandboxError::Image(format!("registry manifest of {repo}:{tag}: {e}")))?;
    Ok(v["layers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["digest"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// Current size of the registry log: pass it to [`registry_blob_downloads`] to count only
/// what happens after this point.
pub fn registry_log_offset(info: &SandboxInfo) -> u64 {
    std::fs::metadata(&info.registry_log)
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Blob digests the registry served with `GET .../blobs/<digest>` answered 200 (the access log
/// lines, combined log format), after byte `offset` of the log, in order.
pub fn registry_blob_downloads(info: &SandboxInfo, offset: u64) -> Result<Vec<String>> {
    let bytes = std::fs::read(&info.registry_log)
        .map_err(|e| SandboxError::io("registry log", &info.registry_log, e))?;
    let start = (offset as usize).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]);
    Ok(parse_blob_gets(&text))
}

/// Parse access-log lines such as
/// `127.0.0.1 - - [..] "GET /v2/library/redis/blobs/sha256:ab.. HTTP/1.1" 200 123 "" "docker/20.10"`.
pub fn parse_blob_gets(log: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in log.lines() {
        let Some(start) = line.find("\"GET /v2/") else {
            continue;
        };
        let rest = &line[start + 1..];
        let Some(end) = rest.find('"') else { continue };
        let request = &rest[..end];
        let after = rest[end + 1..].split_whitespace().next().unwrap_or("");
        let Some(path) = request.split_whitespace().nth(1) else {
            continue;
        };
        if after != "200" {
            continue;
        }
        if let Some((_, digest)) = path.split_once("/blobs/") {
            out.push(digest.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_gets_are_parsed_from_access_lines() {
        let log = "\
time=\"x\" level=info msg=\"response completed\" http.request.method=GET http.request.uri=\"/v2/library/redis/blobs/sha256:aa\"
127.0.0.1 - - [01/Jan/2026:00:00:00 +0000] \"GET /v2/library/redis/blobs/sha256:aa HTTP/1.1\" 200 10 \"\" \"docker/20.10\"
127.0.0.1 - - [01/Jan/2026:00:00:00 +0000] \"HEAD /v2/library/redis/blobs/sha256:bb HTTP/1.1\" 200 0 \"\" \"docker/20.10\"
127.0.0.1 - - [01/Jan/2026:00:00:00 +0000] \"GET /v2/library/redis/blobs/sha256:cc HTTP/1.1\" 404 0 \"\" \"docker/20.10\"
127.0.0.1 - - [01/Jan/2026:00:00:00 +0000] \"GET /v2/library/redis/manifests/7-alpine HTTP/1.1\" 200 10 \"\" \"docker/20.10\"
";
        assert_eq!(parse_blob_gets(log), vec!["sha256:aa".to_string()]);
    }

    #[test]
    fn fixture_spec_has_three_layers_and_a_real_server() {
        let spec = redis_spec().unwrap();
        assert_eq!(spec.layers.len(), 3);
        let built = spec.build().unwrap();
        assert_eq!(built.diff_ids.len(), 3);
        // deterministic: same recipe, same id
        assert_eq!(redis_spec().unwrap().build().unwrap().id, built.id);
    }
}
