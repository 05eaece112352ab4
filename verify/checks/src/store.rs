//! `store.docker-root-persistent`: the Docker root dir is on a persistent filesystem and the
//! daemon's images live there.

use crate::{Ctx, DynCheck};
use async_trait::async_trait;
use ccci_core::{Check, Decided, Halt, Outcome, Trail};
use ci_docker_prune::roots::{from_info, image_store, DaemonRoots, ImageStore, CONTAINERD_CONFIG};
use std::sync::Arc;

pub fn checks() -> Vec<DynCheck> {
    vec![Arc::new(DockerRootPersistent)]
}

/// Filesystems whose content is gone after a reboot, or that are not where data persists: an
/// `overlay` root is a container's or a live system's writable layer.
pub const VOLATILE: &[&str] = &["tmpfs", "ramfs", "devtmpfs", "zram", "squashfs", "overlay"];

/// A filesystem that holds the daemon's data: the directory, its type and source (`findmnt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub path: String,
    pub fstype: String,
    pub source: String,
}

/// The decision from `DockerRootDir`, the filesystems that hold the image store (the Docker
/// root's; with the containerd store also containerd's root's), the expected root (if the spec
/// sets one), and how many of the daemon's images were found in its store on disk.
pub fn decide(
    root: &str,
    holders: &[Holder],
    expected: Option<&str>,
    images: usize,
    on_disk: usize,
    store: &str,
) -> Outcome {
    let mut bad = Vec::new();
    if let Some(exp) = expected {
        if exp.trim_end_matches('/') != root.trim_end_matches('/') {
            bad.push(format!("DockerRootDir is {root}, the gate expects {exp}"));
        }
    }
    for h in holders {
        if VOLATILE.contains(&h.fstype.as_str()) || h.source.starts_with("/dev/zram") {
            bad.push(format!(
                "{} is on {} ({}): its images are lost at reboot",
                h.path, h.fstype, h.source
            ));
        }
    }
    if images > 0 && on_disk == 0 {
        bad.push(format!(
            "the daemon lists {images} image(s) but none is in its {store} on disk"
        ));
    }
    if bad.is_empty() && images == 0 {
        // nothing compared: the filesystem part holds, but that the store keeps images on it
        // is not shown by an empty store
        return Outcome::skip(format!(
            "the daemon lists no image, so that its {store} on disk keeps images cannot be shown (0 of 0 sampled); pull one and run again"
        ));
    }
    if bad.is_empty() {
        let on: Vec<String> = holders
            .iter()
            .map(|h| format!("{} is on {} ({})", h.path, h.fstype, h.source))
            .collect();
        Outcome::pass(format!(
            "{}; {on_disk} of {images} sampled image(s) found in its {store}",
            on.join(", ")
        ))
    } else {
        Outcome::fail(bad.join("; "))
    }
}

/// Where an image's record lives on disk: the legacy store keeps its config under
/// `<root>/image/<driver>/imagedb/content/sha256/<id>`; the containerd store lists an image by
/// its manifest (or index) digest, a blob in containerd's content store,
/// `<containerd root>/io.containerd.content.v1.content/blobs/sha256/<id>`.
pub fn image_record_path(roots: &DaemonRoots, driver: &str, id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    match (&roots.store, &roots.containerd_root) {
        (ImageStore::Containerd, Some(c)) => format!(
            "{}/io.containerd.content.v1.content/blobs/sha256/{hex}",
            c.display()
        ),
        _ => format!(
            "{}/image/{driver}/imagedb/content/sha256/{hex}",
            roots.docker_root.display()
        ),
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
    // the same reading of /info as the prune's disk gate (`ci_docker_prune::roots`), with the
    // host facts it needs for the containerd store read through the target
    let raw = serde_json::to_value(&info).unwrap_or_default();
    let (managed_exists, containerd_config) = if image_store(&raw) == ImageStore::Containerd {
        let managed = format!("{root}/containerd/daemon");
        let exists = ctx
            .cmd(t, &["test", "-d", &managed])
            .await
            .is_ok_and(|o| o.ok());
        let conf = ctx
            .cmd(t, &["cat", CONTAINERD_CONFIG])
            .await
            .ok()
            .filter(|o| o.ok())
            .map(|o| o.stdout_str());
        (exists.then_some(managed), conf)
    } else {
        (None, None)
    };
    let roots = from_info(
        &raw,
        |p| {
            managed_exists
                .as_deref()
                .is_some_and(|m| p == std::path::Path::new(m))
        },
        || containerd_config.clone(),
    );
    t.api(
        "GET /info",
        format!(
            "DockerRootDir={root} Driver={driver} Images={} => {}",
            info.images.unwrap_or(0),
            roots.describe()
        ),
    );
    if root.is_empty() {
        return Err(Halt::error("the daemon reports no DockerRootDir"));
    }
    let mut holders = Vec::new();
    for dir in roots.paths() {
        let dir = dir.to_string_lossy().to_string();
        let out = ctx
            .cmd(
                t,
                &["findmnt", "-n", "-o", "FSTYPE,SOURCE,TARGET", "-T", &dir],
            )
            .await
            .ok()
            .filter(|o| o.ok())
            .ok_or_else(|| Halt::error(format!("cannot tell which filesystem holds {dir}")))?;
        let line = out.stdout_str();
        let mut parts = line.split_whitespace();
        holders.push(Holder {
            path: dir,
            fstype: parts.next().unwrap_or("").to_string(),
            source: parts.next().unwrap_or("").to_string(),
        });
    }
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
        let path = image_record_path(&roots, &driver, &img.id);
        if ctx
            .cmd(t, &["test", "-f", &path])
            .await
            .is_ok_and(|o| o.ok())
        {
            on_disk += 1;
        }
    }
    let store = match roots.store {
        ImageStore::Legacy => "image store",
        ImageStore::Containerd => "containerd content store",
    };
    Ok(decide(
        &root,
        &holders,
        ctx.params.store.docker_root.as_deref(),
        sampled,
        on_disk,
        store,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccci_core::Verdict::*;

    fn h(path: &str, fstype: &str, source: &str) -> Holder {
        Holder {
            path: path.into(),
            fstype: fstype.into(),
            source: source.into(),
        }
    }

    #[test]
    fn decisions() {
        let ext4 = [h("/var/lib/docker", "ext4", "/dev/vda1")];
        let d = |holders: &[Holder], exp: Option<&str>, images, on_disk| {
            decide(
                "/var/lib/docker",
                holders,
                exp,
                images,
                on_disk,
                "image store",
            )
            .verdict
        };
        assert_eq!(d(&ext4, None, 3, 3), Pass);
        // an empty store compares nothing: a skip, never "0 of 0" passing
        assert_eq!(d(&ext4, None, 0, 0), Skip);
        // a volatile filesystem still fails, images or not
        assert_eq!(
            d(&[h("/var/lib/docker", "tmpfs", "tmpfs")], None, 0, 0),
            Fail
        );
        assert_eq!(
            d(&[h("/var/lib/docker", "tmpfs", "tmpfs")], None, 3, 3),
            Fail
        );
        assert_eq!(d(&ext4, Some("/srv/docker"), 3, 3), Fail);
        assert_eq!(d(&ext4, None, 3, 0), Fail);
        assert_eq!(
            d(&[h("/var/lib/docker", "ext4", "/dev/zram0")], None, 0, 0),
            Fail
        );
        // a container's or live system's writable layer
        assert_eq!(
            d(&[h("/var/lib/docker", "overlay", "overlay")], None, 3, 3),
            Fail
        );
        // containerd store: containerd's root on a volatile filesystem loses the images
        let o = decide(
            "/var/lib/docker",
            &[ext4[0].clone(), h("/var/lib/containerd", "tmpfs", "tmpfs")],
            None,
            3,
            3,
            "containerd content store",
        );
        assert_eq!(o.verdict, Fail);
        assert!(
            o.detail.contains("/var/lib/containerd is on tmpfs"),
            "{}",
            o.detail
        );
    }

    fn roots_of(fixture: &str) -> DaemonRoots {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/docker-api")
            .join(fixture);
        let v = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        from_info(&v, |_| false, || None)
    }

    #[test]
    fn image_records_on_each_store() {
        let id = "sha256:25156cfb3f279e4e5e041ae8e2f695dc2821c6c693c666bb004714008838da7b";
        assert_eq!(
            image_record_path(&roots_of("info-20.10-api1.41.json"), "overlay2", id),
            "/var/lib/docker/image/overlay2/imagedb/content/sha256/25156cfb3f279e4e5e041ae8e2f695dc2821c6c693c666bb004714008838da7b"
        );
        assert_eq!(
            image_record_path(&roots_of("info-28.5-api1.51-containerd.json"), "overlayfs", id),
            "/var/lib/ccci-sandbox/ccci-sid-ctrd/data-root/containerd/daemon/io.containerd.content.v1.content/blobs/sha256/25156cfb3f279e4e5e041ae8e2f695dc2821c6c693c666bb004714008838da7b"
        );
        assert_eq!(
            image_record_path(&roots_of("info-29.0-api1.52-containerd.json"), "overlayfs", id),
            "/var/lib/containerd/io.containerd.content.v1.content/blobs/sha256/25156cfb3f279e4e5e041ae8e2f695dc2821c6c693c666bb004714008838da7b"
        );
    }
}
