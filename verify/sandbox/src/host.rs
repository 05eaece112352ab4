//! The systemd host: a debootstrap'ed Debian rootfs (cached as a docker-archive in
//! `cache_dir`), run as a container of the sandbox daemon with systemd as PID 1, and
//! `deploy` of units, binary and source tree into it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigCgroupnsModeEnum, Mount, MountBindOptions,
    MountBindOptionsPropagationEnum, MountType,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::error::{Result, SandboxError};
use crate::images;
use crate::{sys, Deploy, SandboxConfig, SandboxInfo};

/// Bump when the rootfs recipe (post-processing below) changes: it is part of the cache key.
const RECIPE_VERSION: &str = "3";
const SUITE: &str = "bookworm";
const PACKAGES: &str = "systemd,systemd-sysv,dbus,procps,ca-certificates";

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
pub const DOCKER_SERVICE_STANDIN: &str = "\
[Unit]
Description=Docker daemon (stand-in: the Docker daemon is served from outside this container)
Documentation=file:/usr/share/doc/ccci-sandbox/README

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/test -S /var/run/docker.sock

[Install]
WantedBy=multi-user.target
";

const README: &str = "\
This is the ccci sandbox's systemd host. The Docker daemon is served from outside this
container: its socket is bind-mounted at /run/docker.sock (= /var/run/docker.sock), and
docker.service here is a stand-in that only checks that the socket exists.
";

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
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for u in MASKED_UNITS {
        h.update(u.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())[..16].to_string()
}

fn mirror() -> String {
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
    let path = cache_dir.join(format!("systemd-host-{hash}.tar"));
    let tag = format!("ccci-sandbox/systemd-host:{hash}");
    let _lock = sys::lock_file(&cache_dir.join("rootfs.lock"))?;
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

/// Load the rootfs image if needed, (re)create and start the host container, wait for systemd.
pub(crate) async fn start_host(
    docker: &Docker,
    cfg: &SandboxConfig,
    info: &SandboxInfo,
    rootfs: &RootfsArchive,
) -> Result<()> {
    if docker.inspect_image(&rootfs.tag).await.is_err() {
        images::load_archive_file(docker, &rootfs.path).await?;
        if std::env::var_os("CCCI_SANDBOX_TRACE").is_some() {
            eprintln!("ccci-sandbox: systemd host image loaded");
        }
        docker
            .inspect_image(&rootfs.tag)
            .await
            .map_err(|e| SandboxError::docker("systemd host image", e))?;
    }
    let name = &info.host_container;
    if docker.inspect_container(name, None).await.is_ok() {
        docker
            .remove_container(
                name,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await
            .map_err(|e| SandboxError::docker("systemd host", e))?;
    }
    let socket = cfg.socket().to_string_lossy().to_string();
    let root = info.data_root.to_string_lossy().to_string();
    let view = crate::lifecycle::Paths::of(cfg)
        .data_view
        .to_string_lossy()
        .to_string();
    let mut tmpfs = HashMap::new();
    tmpfs.insert("/run".to_string(), "rw,nosuid,nodev,mode=755".to_string());
    tmpfs.insert(
        "/run/lock".to_string(),
        "rw,nosuid,nodev,noexec".to_string(),
    );
    tmpfs.insert("/tmp".to_string(), "rw,nosuid,nodev".to_string());
    let body = ContainerCreateBody {
        image: Some(rootfs.tag.clone()),
        hostname: Some("ccci-host".into()),
        cmd: Some(vec!["/sbin/init".into()]),
        env: Some(vec!["container=docker".into()]),
        stop_signal: Some("SIGRTMIN+3".into()),
        host_config: Some(HostConfig {
            cap_add: Some(vec!["SYS_ADMIN".into(), "NET_ADMIN".into()]),
            security_opt: Some(vec!["seccomp=unconfined".into()]),
            cgroupns_mode: Some(HostConfigCgroupnsModeEnum::HOST),
            binds: Some(vec![
                "/sys/fs/cgroup:/sys/fs/cgroup:rw".into(),
                format!("{socket}:/run/docker.sock"),
            ]),
            // The data-root holds every container's overlay mounts, this one's own rootfs
            // included: a recursive bind of it (what `-v` does) copies that tree into itself,
            // and since dockerd makes its root a shared mount, every archive upload multiplies
            // the copies until mount(2) fails with ENOSPC at the 100,000-mount limit. So the
            // host gets the *view*: a plain bind of the same ext4 taken before dockerd started,
            // private, outside the daemon root (see lifecycle.rs), mounted here
            // non-recursively. It shows the filesystem itself (statvfs, the image store's
            // files), not the overlays.
            mounts: Some(vec![Mount {
                target: Some(root.clone()),
                source: Some(view.clone()),
                typ: Some(MountType::BIND),
                bind_options: Some(MountBindOptions {
                    propagation: Some(MountBindOptionsPropagationEnum::RPRIVATE),
                    non_recursive: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            tmpfs: Some(tmpfs),
            ..Default::default()
        }),
        ..Default::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(name).build()),
            body,
        )
        .await
        .map_err(|e| SandboxError::docker("systemd host create", e))?;
    docker
        .start_container(
            name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .map_err(|e| SandboxError::docker("systemd host start", e))?;
    wait_systemd(docker, info, Duration::from_secs(120)).await
}

async fn wait_systemd(docker: &Docker, info: &SandboxInfo, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut last: String;
    loop {
        match exec(
            docker,
            &info.host_container,
            &["systemctl", "is-system-running"],
        )
        .await
        {
            Ok((_, out)) => {
                last = out.trim().to_string();
                match last.as_str() {
                    "running" | "degraded" => return Ok(()),
                    "maintenance" | "stopping" | "offline" => break,
                    _ => {}
                }
            }
            Err(e) => last = e.to_string(),
        }
        let running = docker
            .inspect_container(&info.host_container, None)
            .await
            .ok()
            .and_then(|c| c.state)
            .and_then(|s| s.running)
            .unwrap_or(false);
        if !running {
            last = format!("container not running ({last})");
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let failed = exec(
        docker,
        &info.host_container,
        &["systemctl", "--failed", "--no-legend", "--plain"],
    )
    .await
    .map(|(_, o)| o)
    .unwrap_or_else(|e| e.to_string());
    let mut console = String::new();
    let mut logs = docker.logs(
        &info.host_container,
        Some(
            bollard::query_parameters::LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .tail("30")
                .build(),
        ),
    );
    while let Some(Ok(chunk)) = logs.next().await {
        console.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    Err(SandboxError::HostNotRunning {
        container: info.host_container.clone(),
        state: last,
        failed_units: if failed.trim().is_empty() {
            "(none)".into()
        } else {
            failed.trim().to_string()
        },
        console_tail: console.trim_end().to_string(),
    })
}

/// Is the host container running with systemd up (`running` or `degraded`)?
pub(crate) async fn host_running(docker: &Docker, info: &SandboxInfo) -> bool {
    matches!(
        exec(docker, &info.host_container, &["systemctl", "is-system-running"]).await,
        Ok((_, ref out)) if matches!(out.trim(), "running" | "degraded")
    )
}

/// Run argv in a container of `docker`; returns (exit code, stdout+stderr).
pub(crate) async fn exec(docker: &Docker, container: &str, argv: &[&str]) -> Result<(i64, String)> {
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(argv.iter().map(|s| s.to_string()).collect()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| SandboxError::docker("exec", e))?;
    let mut out = String::new();
    if let StartExecResults::Attached { mut output, .. } = docker
        .start_exec(&created.id, None)
        .await
        .map_err(|e| SandboxError::docker("exec", e))?
    {
        while let Some(chunk) = output.next().await {
            let chunk = chunk.map_err(|e| SandboxError::docker("exec", e))?;
            out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
    }
    let code = docker
        .inspect_exec(&created.id)
        .await
        .map_err(|e| SandboxError::docker("exec", e))?
        .exit_code
        .unwrap_or(-1);
    Ok((code, out))
}

/// Run argv in the sandbox's systemd host container; returns (exit code, stdout+stderr).
pub async fn exec_in_host(info: &SandboxInfo, argv: &[&str]) -> Result<(i64, String)> {
    let docker = info.docker_negotiated().await?;
    exec(&docker, &info.host_container, argv).await
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
    fn recipe_hash_is_stable_and_short() {
        assert_eq!(recipe_hash(), recipe_hash());
        assert_eq!(recipe_hash().len(), 16);
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
