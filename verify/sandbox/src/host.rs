//! The systemd host container: created from the cached rootfs image with the capabilities
//! systemd needs (no `--privileged`), the daemon's socket and a view of the data-root mounted
//! in; waiting for systemd; running commands in it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigCgroupnsModeEnum, Mount, MountBindOptions,
    MountBindOptionsPropagationEnum, MountType,
};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;

use crate::error::{Result, SandboxError};
use crate::images;
use crate::layout::in_host;
use crate::rootfs::RootfsArchive;
use crate::{SandboxConfig, SandboxInfo};

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
    let layout = cfg.layout();
    let socket = layout.socket().to_string_lossy().to_string();
    let root = info.data_root.to_string_lossy().to_string();
    let view = layout.data_view().to_string_lossy().to_string();
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
                format!("{socket}:{}", in_host::DOCKER_SOCKET),
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
