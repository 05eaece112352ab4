//! `store.docker-root-persistent`: the Docker root dir is on a persistent filesystem and the
//! daemon's images live there.

use crate::{Ctx, DynCheck};
use async_trait::async_trait;
use ccci_core::{Check, Evidence, Outcome};
use std::sync::Arc;

pub fn checks() -> Vec<DynCheck> {
    vec![Arc::new(DockerRootPersistent)]
}

/// Filesystems whose content is gone after a reboot.
pub const VOLATILE: &[&str] = &["tmpfs", "ramfs", "devtmpfs", "zram", "squashfs"];

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
        let docker = match ctx.target.docker().await {
            Ok(d) => d,
            Err(e) => return Outcome::error(e.to_string()),
        };
        let info = match docker.info().await {
            Ok(i) => i,
            Err(e) => return Outcome::error(format!("GET /info: {e}")),
        };
        let root = info.docker_root_dir.clone().unwrap_or_default();
        let driver = info.driver.clone().unwrap_or_default();
        let mut evidence = vec![Evidence::api(
            "GET /info",
            format!(
                "DockerRootDir={root} Driver={driver} Images={}",
                info.images.unwrap_or(0)
            ),
        )];
        if root.is_empty() {
            return Outcome::error("the daemon reports no DockerRootDir").with_evidence(evidence);
        }
        let (out, ev) = ctx
            .run(&["findmnt", "-n", "-o", "FSTYPE,SOURCE,TARGET", "-T", &root])
            .await;
        evidence.push(ev);
        let Some(out) = out.filter(|o| o.ok()) else {
            return Outcome::error(format!("cannot tell which filesystem holds {root}"))
                .with_evidence(evidence);
        };
        let line = out.stdout_str();
        let mut parts = line.split_whitespace();
        let fstype = parts.next().unwrap_or("").to_string();
        let source = parts.next().unwrap_or("").to_string();
        // sample the daemon's images and look for them in its image store on disk
        let images = docker
            .list_images(None::<bollard::query_parameters::ListImagesOptions>)
            .await
            .unwrap_or_default();
        let mut on_disk = 0;
        let mut sampled = 0;
        for img in images.iter().take(5) {
            sampled += 1;
            let hex = img.id.strip_prefix("sha256:").unwrap_or(&img.id);
            let path = format!("{root}/image/{driver}/imagedb/content/sha256/{hex}");
            let (o, ev) = ctx.run(&["test", "-f", &path]).await;
            evidence.push(ev);
            if o.is_some_and(|o| o.ok()) {
                on_disk += 1;
            }
        }
        decide(
            &root,
            &fstype,
            &source,
            ctx.params.store.docker_root.as_deref(),
            sampled,
            on_disk,
        )
        .with_evidence(evidence)
    }
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
    }
}
