//! The systemd host's root filesystem: `debootstrap` (minbase + systemd) of Debian bookworm,
//! post-processed for a container (masked units, `docker.service` stand-in), packed as a
//! one-layer docker-archive and cached in `cache_dir` under a hash of the recipe.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::error::{Result, SandboxError};
use crate::{images, layout, sys};

/// Bump when the rootfs recipe (post-processing below) changes: it is part of the cache key.
const RECIPE_VERSION: &str = "4";
const SUITE: &str = "bookworm";
const PACKAGES: &str = "systemd,systemd-sysv,dbus,procps,ca-certificates";
/// Installed with apt in the debootstrap'ed tree (debootstrap's own configure step fails on
/// nix-bin's Perl dependencies): `nix-bin`, so the `nixos` flavour's host has a real Nix (it
/// builds the system stand-in and evaluates flakes); the `debian` flavour never runs it. And
/// `git`: Nix 2.8 reads a `git+file` flake (what `nixos-rebuild --flake` evaluates, and what
/// `repro.system-git-eq-host` evaluates git at REV as) with the git binary; NixOS's own Nix
/// reads it with libgit2.
const APT_PACKAGES: &[&str] = &["nix-bin", "git"];

/// `/etc/nix/nix.conf` of the host: single-user Nix as root (no `nixbld` build users, no
/// build sandbox: a container cannot make the namespaces), flakes on.
const NIX_CONF: &str =
    "build-users-group =\nsandbox = false\nexperimental-features = nix-command flakes\n";

/// Units that cannot work in a container (no udev, no kernel modules, read-only /proc/sys,
/// no consoles) or that would only add noise; masked in the rootfs.
const MASKED_UNITS: &[&str] = &[
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    "systemd-modules-load.service",
    "systemd-remount-fs.service",
    "systemd-sysctl.service",
    "systemd-firstboot.service",
    "systemd-machine-id-commit.service",
    "systemd-logind.service",
    "systemd-binfmt.service",
    "systemd-pstore.service",
    "systemd-hwdb-update.service",
    "systemd-random-seed.service",
    "systemd-update-utmp.service",
    "systemd-update-utmp-runlevel.service",
    "proc-sys-fs-binfmt_misc.automount",
    "sys-kernel-config.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount",
    "dev-mqueue.mount",
    "getty@tty1.service",
    "console-getty.service",
    "getty.target",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "fstrim.timer",
    "dpkg-db-backup.timer",
];

/// The `docker.service` of the systemd host. The real daemon runs outside the container (its
/// socket is bind-mounted at /run/docker.sock); this stand-in lets units that say
/// `Requires=docker.service` / `After=docker.service` start, and fails when the socket is gone.
pub const DOCKER_SERVICE_STANDIN: &str =
    include_str!("../../../fixtures/images/systemd-host/docker.service");

const README: &str = include_str!("../../../fixtures/images/systemd-host/README");

/// The cached rootfs image.
#[derive(Clone, Debug)]
pub(crate) struct RootfsArchive {
    pub path: PathBuf,
    pub tag: String,
}

fn recipe_hash() -> String {
    let mut h = Sha256::new();
    for part in [
        RECIPE_VERSION,
        SUITE,
        PACKAGES,
        DOCKER_SERVICE_STANDIN,
        README,
        NIX_CONF,
        // the code that builds and post-processes the tree: a change to it is a new recipe
        // even when no constant above changed (a warm cache must never hide it)
        include_str!("rootfs.rs"),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for part in APT_PACKAGES {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for u in MASKED_UNITS {
        h.update(u.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())[..16].to_string()
}

/// The Debian mirror (`CCCI_SANDBOX_MIRROR`, default `http://deb.debian.org/debian`): the
/// rootfs is debootstrap'ed from it and newer engines are fetched from it.
pub(crate) fn mirror() -> String {
    std::env::var("CCCI_SANDBOX_MIRROR")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "http://deb.debian.org/debian".to_string())
}

/// The rootfs docker-archive for the current recipe, built (debootstrap + post-processing +
/// packing) if the cache lacks it. Serialised by a lock in `cache_dir` (shared by all names).
pub(crate) fn ensure_rootfs_archive(cache_dir: &Path) -> Result<RootfsArchive> {
    std::fs::create_dir_all(cache_dir).map_err(|e| SandboxError::io("rootfs", cache_dir, e))?;
    let hash = recipe_hash();
    let path = layout::rootfs_archive(cache_dir, &hash);
    let tag = layout::rootfs_tag(&hash);
    let _lock = sys::lock_file(&layout::rootfs_lock(cache_dir))?;
    if path.is_file() {
        return Ok(RootfsArchive { path, tag });
    }
    // Build dirs of runs that were killed half-way (we hold the lock: nobody else builds).
    if let Ok(rd) = std::fs::read_dir(cache_dir) {
        for ent in rd.flatten() {
            if ent.file_name().to_string_lossy().starts_with("build-") {
                remove_build_dir(&ent.path())?;
            }
        }
    }
    let work = cache_dir.join(format!("build-{hash}-{}", std::process::id()));
    let result = build_rootfs_archive(&work, &path, &tag);
    remove_build_dir(&work)?;
    result?;
    // Older recipes are useless now.
    if let Ok(rd) = std::fs::read_dir(cache_dir) {
        for ent in rd.flatten() {
            let n = ent.file_name().to_string_lossy().to_string();
            if n.starts_with("systemd-host-") && n.ends_with(".tar") && ent.path() != path {
                let _ = std::fs::remove_file(ent.path());
            }
        }
    }
    Ok(RootfsArchive { path, tag })
}

/// Remove a rootfs build dir, first unmounting what debootstrap may have left mounted in it
/// (/proc, /sys, ...); never deletes through a mount point.
fn remove_build_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for m in sys::mounts_under(&[dir.to_path_buf()]) {
        sys::umount_all(&m)?;
    }
    let left = sys::mounts_under(&[dir.to_path_buf()]);
    if !left.is_empty() {
        return Err(SandboxError::Teardown(format!(
            "not removing {}: still mounted: {left:?}",
            dir.display()
        )));
    }
    std::fs::remove_dir_all(dir).map_err(|e| SandboxError::io("rootfs cleanup", dir, e))
}

fn build_rootfs_archive(work: &Path, out: &Path, tag: &str) -> Result<()> {
    std::fs::create_dir_all(work).map_err(|e| SandboxError::io("rootfs", work, e))?;
    let rootfs = work.join("rootfs");
    let rootfs_s = rootfs.to_string_lossy().to_string();
    let t0 = Instant::now();
    let include = format!("--include={PACKAGES}");
    let mirror = mirror();
    sys::run(
        "rootfs (debootstrap)",
        &[
            "debootstrap",
            "--variant=minbase",
            &include,
            SUITE,
            &rootfs_s,
            &mirror,
        ],
    )?;
    apt_install(&rootfs)?;
    post_process(&rootfs)?;
    if std::env::var_os("CCCI_SANDBOX_TRACE").is_some() {
        eprintln!(
            "ccci-sandbox: debootstrap took {:.1} s",
            t0.elapsed().as_secs_f64()
        );
    }

    // Layer tar, hashed as it is written.
    let layer_path = work.join("layer.tar");
    let diff_id = write_layer(&rootfs, &layer_path)?;

    let mut spec = images::ImageSpec::new(Vec::new(), "2024-01-01T00:00:00Z");
    spec.tags = vec![tag.to_string()];
    spec.cmd = vec!["/sbin/init".into()];
    spec.env.push("container=docker".into());
    spec.stop_signal = Some("SIGRTMIN+3".into());
    spec.labels.insert(
        "io.ccci.sandbox".into(),
        "systemd host (debootstrap minbase + systemd)".into(),
    );
    let tmp = work.join("image.tar");
    images::write_archive_with_layer_file(&spec, &layer_path, &diff_id, &tmp)?;
    if std::env::var_os("CCCI_SANDBOX_TRACE").is_some() {
        eprintln!(
            "ccci-sandbox: rootfs packed after {:.1} s",
            t0.elapsed().as_secs_f64()
        );
    }
    std::fs::rename(&tmp, out).map_err(|e| SandboxError::io("rootfs", out, e))?;
    Ok(())
}

/// `apt-get install` of [`APT_PACKAGES`] inside the new tree (chroot, /proc mounted for the
/// duration; the build dir's clean-up unmounts it on any error path too).
fn apt_install(rootfs: &Path) -> Result<()> {
    let r = rootfs.to_string_lossy().to_string();
    let proc_dir = format!("{r}/proc");
    sys::run(
        "rootfs (mount proc)",
        &["mount", "-t", "proc", "proc", &proc_dir],
    )?;
    let mut argv = vec![
        "chroot",
        r.as_str(),
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
    ];
    argv.extend(APT_PACKAGES.iter().copied());
    let res = sys::run("rootfs (apt-get install)", &argv);
    let _ = sys::run("rootfs (umount proc)", &["umount", &proc_dir]);
    res.map(|_| ())
}

fn post_process(rootfs: &Path) -> Result<()> {
    let w = |rel: &str, text: &str| -> Result<()> {
        let p = rootfs.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| SandboxError::io("rootfs", parent, e))?;
        }
        let _ = std::fs::remove_file(&p);
        std::fs::write(&p, text).map_err(|e| SandboxError::io("rootfs", &p, e))
    };
    let link = |rel: &str, target: &str| -> Result<()> {
        let p = rootfs.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| SandboxError::io("rootfs", parent, e))?;
        }
        let _ = std::fs::remove_file(&p);
        std::os::unix::fs::symlink(target, &p).map_err(|e| SandboxError::io("rootfs", &p, e))
    };
    for u in MASKED_UNITS {
        link(&format!("etc/systemd/system/{u}"), "/dev/null")?;
    }
    w("etc/systemd/system/docker.service", DOCKER_SERVICE_STANDIN)?;
    link(
        "etc/systemd/system/multi-user.target.wants/docker.service",
        "/etc/systemd/system/docker.service",
    )?;
    link(
        "etc/systemd/system/default.target",
        "/lib/systemd/system/multi-user.target",
    )?;
    w("usr/share/doc/ccci-sandbox/README", README)?;
    w("etc/nix/nix.conf", NIX_CONF)?;
    w("etc/hostname", "ccci-host\n")?;
    // A fixed machine id: an empty one would make systemd run first-boot presets.
    w(
        "etc/machine-id",
        &format!(
            "{}\n",
            &hex::encode(Sha256::digest(b"ccci-sandbox-host"))[..32]
        ),
    )?;
    // debootstrap leaves the downloaded .debs and apt lists behind: 40+ MB nobody needs.
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let d = rootfs.join(dir);
        if let Ok(rd) = std::fs::read_dir(&d) {
            for ent in rd.flatten() {
                if ent.file_type().map(|t| t.is_file()).unwrap_or(false) {
                    let _ = std::fs::remove_file(ent.path());
                }
            }
        }
    }
    Ok(())
}

/// Tar of the rootfs (symlinks kept as links, owners and modes preserved, /dev, /proc, /sys,
/// /run contents skipped: the container runtime provides them). Returns the sha256 diff id.
fn write_layer(rootfs: &Path, out: &Path) -> Result<String> {
    struct HashWriter<W: Write> {
        inner: W,
        hasher: Sha256,
    }
    impl<W: Write> Write for HashWriter<W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.inner.write(buf)?;
            self.hasher.update(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }
    let f = std::fs::File::create(out).map_err(|e| SandboxError::io("rootfs", out, e))?;
    let hw = HashWriter {
        inner: std::io::BufWriter::new(f),
        hasher: Sha256::new(),
    };
    let mut b = tar::Builder::new(hw);
    b.follow_symlinks(false);
    let skip_contents = ["dev", "proc", "sys", "run"];
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = rootfs.join(&rel);
        let mut entries: Vec<_> = std::fs::read_dir(&full)
            .map_err(|e| SandboxError::io("rootfs", &full, e))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for ent in entries {
            let child_rel = rel.join(ent.file_name());
            let ft = ent
                .file_type()
                .map_err(|e| SandboxError::io("rootfs", ent.path(), e))?;
            if ft.is_dir() {
                b.append_dir(&child_rel, ent.path())
                    .map_err(|e| SandboxError::io("rootfs pack", ent.path(), e))?;
                let top = child_rel.to_string_lossy().to_string();
                if !skip_contents.contains(&top.as_str()) {
                    stack.push(child_rel);
                }
            } else if ft.is_file() || ft.is_symlink() {
                b.append_path_with_name(ent.path(), &child_rel)
                    .map_err(|e| SandboxError::io("rootfs pack", ent.path(), e))?;
            }
            // sockets, fifos, device nodes: skipped
        }
    }
    let mut hw = b
        .into_inner()
        .map_err(|e| SandboxError::io("rootfs pack", out, e))?;
    hw.flush()
        .map_err(|e| SandboxError::io("rootfs pack", out, e))?;
    Ok(format!("sha256:{}", hex::encode(hw.hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_hash_is_stable_and_short() {
        assert_eq!(recipe_hash(), recipe_hash());
        assert_eq!(recipe_hash().len(), 16);
    }
}
