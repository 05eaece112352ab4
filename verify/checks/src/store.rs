//! `store.docker-root-persistent`: the Docker root dir is on a persistent filesystem and the
//! daemon's images live there.

use crate::{Ctx, DynCheck};
use async_trait::async_trait;
use ccci_core::{Check, Decided, Halt, Outcome, Trail};
use std::sync::Arc;

pub fn checks() -> Vec<DynCheck> {
    vec![Arc::new(DockerRootPersistent)]
}

/// Filesystems whose content is gone after a reboot, or that are not where data persists: an
/// `overlay` root is a container's or a live system's writable layer.
pub const VOLATILE: &[&str] = &["tmpfs", "ramfs", "devtmpfs", "zram", "squashfs", "overlay"];

/// The decision from `DockerRootDir`, the filesystem under it, the expected root (if the spec
/// sets one), and how many of the daemon's images were found in its store on disk.
pub fn decide(
    root: &str,
    fstype: &str,
    source: &str,
    expected: Option<&str>,
    images: usize,
    on_disk: usize,
) -> Outcome {
    let mut bad = Vec::new();
    if let Some(exp) = expected {
        if exp.trim_end_matches('/') != root.trim_end_matches('/') {
            bad.push(format!("DockerRootDir is {root}, the gate expects {exp}"));
        }
    }
    if VOLATILE.contains(&fstype) || source.starts_with("/dev/zram") {
        bad.push(format!(
            "{root} is on {fstype} ({source}): its images are lost at reboot"
        ));
    }
    if images > 0 && on_disk == 0 {
        bad.push(format!(
            "the daemon lists {images} image(s) but none is in {root}'s image store"
        ));
    }
    if bad.is_empty() {
        Outcome::pass(format!(
            "{root} is on {fstype} ({source}); {on_disk} of {images} sampled image(s) found in its store"
        ))
    } else {
        Outcome::fail(bad.join("; "))
    }
}

struct DockerRootPersistent;
#[async_trait]
impl Check<Ctx> for DockerRootPersistent {
    fn id(&self) -> &'static str {
        "store.docker-root-persistent"
    }
    fn title(&self) -> &'static str {
        "the Docker root dir is on a persistent filesystem and keeps its images"
    }
    async fn run(&self, ctx: &Ctx) -> Outcome {
        let mut t = Trail::new();
        let r = docker_root_persistent(ctx, &mut t).await;
        t.conclude(r)
    }
}

async fn docker_root_persistent(ctx: &Ctx, t: &mut Trail) -> Decided {
    let docker = ctx.docker().await?;
    let info = docker
        .info()
        .await
        .map_err(|e| Halt::error(format!("GET /info: {e}")))?;
    let root = info.docker_root_dir.clone().unwrap_or_default();
    let driver = info.driver.clone().unwrap_or_default();
    t.api(
        "GET /info",
        format!(
            "DockerRootDir={root} Driver={driver} Images={}",
            info.images.unwrap_or(0)
        ),
    );
    if root.is_empty() {
        return Err(Halt::error("the daemon reports no DockerRootDir"));
    }
    let out = ctx
        .cmd(
            t,
            &["findmnt", "-n", "-o", "FSTYPE,SOURCE,TARGET", "-T", &root],
        )
        .await
        .ok()
        .filter(|o| o.ok())
        .ok_or_else(|| Halt::error(format!("cannot tell which filesystem holds {root}")))?;
    let line = out.stdout_str();
    let mut parts = line.split_whitespace();
    let fstype = parts.next().unwrap_or("").to_string();
    let source = parts.next().unwrap_or("").to_string();
    // sample the daemon's images and look for them in its image store on disk
    // a listing that fails is an error, never "0 of 0 sampled"
    let images = docker
        .list_images(None::<bollard::query_parameters::ListImagesOptions>)
        .await
        .map_err(|e| Halt::error(format!("GET /images/json: {e}")))?;
    let mut on_disk = 0;
    let mut sampled = 0;
    for img in images.iter().take(5) {
        sampled += 1;
        let hex = img.id.strip_prefix("sha256:").unwrap_or(&img.id);
        let path = format!("{root}/image/{driver}/imagedb/content/sha256/{hex}");
        if ctx
            .cmd(t, &["test", "-f", &path])
            .await
            .is_ok_and(|o| o.ok())
        {
            on_disk += 1;
        }
    }
    Ok(decide(
        &root,
        &fstype,
        &source,
        ctx.params.store.docker_root.as_deref(),
        sampled,
        on_disk,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccci_core::Verdict::*;

    #[test]
    fn decisions() {
        assert_eq!(
            decide("/var/lib/docker", "ext4", "/dev/vda1", None, 3, 3).verdict,
            Pass
        );
        assert_eq!(
            decide("/var/lib/docker", "tmpfs", "tmpfs", None, 3, 3).verdict,
            Fail
        );
        assert_eq!(
            decide(
                "/var/lib/docker",
                "ext4",
                "/dev/vda1",
                Some("/srv/docker"),
                3,
                3
            )
            .verdict,
            Fail
        );
        assert_eq!(
            decide("/var/lib/docker", "ext4", "/dev/vda1", None, 3, 0).verdict,
            Fail
        );
        assert_eq!(
            decide("/var/lib/docker", "ext4", "/dev/zram0", None, 0, 0).verdict,
            Fail
        );
        // a container's or live system's writable layer
        assert_eq!(
            decide("/var/lib/docker", "overlay", "overlay", None, 3, 3).verdict,
            Fail
        );
    }
}
