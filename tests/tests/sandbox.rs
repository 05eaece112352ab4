//! The sandbox is real: a cold pull downloads the fixture's layers (seen in the pull stream and
//! in the registry's access log), a warm pull downloads none, a swarm service converges and
//! answers PING, systemd runs in the host container, a ballast file moves the data-root's usage.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bollard::models::{
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec,
    TaskState,
};
use bollard::query_parameters::{CreateImageOptionsBuilder, ListTasksOptionsBuilder};
use bollard::Docker;
use ccci_sandbox::fixture;
use ccci_sandbox::images::{self, ImageSpec};
use ccci_tests::{block_on, sandbox};
use futures_util::StreamExt;

async fn client() -> Docker {
    sandbox()
        .docker_negotiated()
        .await
        .expect("connect to the sandbox daemon")
}

/// Pull `redis:7-alpine` through the daemon (and so through its registry mirror); returns the
/// short ids of the layers the stream reported as downloaded.
async fn pull_fixture(docker: &Docker) -> BTreeSet<String> {
    let mut downloaded = BTreeSet::new();
    let mut stream = docker.create_image(
        Some(
            CreateImageOptionsBuilder::default()
                .from_image("redis")
                .tag("7-alpine")
                .build(),
        ),
        None,
        None,
    );
    while let Some(item) = stream.next().await {
        let item = item.expect("pull progress");
        if let (Some(id), Some(status)) = (item.id.as_deref(), item.status.as_deref()) {
            if status == "Download complete" || status == "Pull complete" {
                downloaded.insert(id.to_string());
            }
        }
    }
    downloaded
}

#[test]
#[serial_test::file_serial(sandbox)]
fn cold_pull_downloads_every_layer_and_warm_pull_none() {
    let info = sandbox();
    block_on(async {
        let docker = client().await;
        // Make it truly cold in a shared sandbox: no local image under any name.
        fixture::remove_local_fixture(&docker)
            .await
            .expect("remove local redis images");
        let layers = fixture::registry_manifest_layers(info, fixture::REPOSITORY, fixture::TAG)
            .expect("registry manifest");
        assert!(
            layers.len() >= 3,
            "the registry's redis:7-alpine has {} layers: {layers:?}",
            layers.len()
        );

        let offset = fixture::registry_log_offset(info);
        let cold = pull_fixture(&docker).await;
        let served = fixture::registry_blob_downloads(info, offset).expect("registry log");
        let served_layers: BTreeSet<&String> =
            served.iter().filter(|d| layers.contains(d)).collect();
        assert!(
            cold.len() >= 3,
            "cold pull stream reported {} downloaded layers: {cold:?}",
            cold.len()
        );
        assert_eq!(
            served_layers.len(),
            layers.len(),
            "registry log shows these layer blobs served: {served:?}, manifest has {layers:?}"
        );
        // The stream's short ids are the layer digests' prefixes.
        for id in &cold {
            assert!(
                layers
                    .iter()
                    .any(|d| d.trim_start_matches("sha256:").starts_with(id)),
                "stream id {id} is not a layer of the manifest {layers:?}"
            );
        }

        let offset = fixture::registry_log_offset(info);
        let warm = pull_fixture(&docker).await;
        let served = fixture::registry_blob_downloads(info, offset).expect("registry log");
        assert!(warm.is_empty(), "warm pull downloaded layers: {warm:?}");
        assert!(
            served.is_empty(),
            "warm pull fetched blobs from the registry: {served:?}"
        );
        // leave the sandbox as a CI host has it (a pull by tag tagged it): a gate run after the
        // suite (`.ci/gate`) would otherwise skip `prune.keeps-deployed-images`
        fixture::untag_local(&docker)
            .await
            .expect("untag the fixture");
    });
}

/// Removes the service when dropped, also when the test fails half-way.
struct ServiceGuard(String);
impl Drop for ServiceGuard {
    fn drop(&mut self) {
        let name = self.0.clone();
        block_on(async move {
            if let Ok(d) = sandbox().docker_negotiated().await {
                let _ = d.delete_service(&name).await;
            }
        });
    }
}

#[test]
#[serial_test::file_serial(sandbox)]
fn swarm_service_from_the_fixture_converges_and_answers_ping() {
    let info = sandbox();
    let name = format!("ccci-t-redis-{}", std::process::id());
    let _guard = ServiceGuard(name.clone());
    let container_id = block_on(async {
        let docker = client().await;
        // pinned by digest, as `docker service create` / `stack deploy` do (the daemon would
        // pull a bare tag by tag and leave `redis:7-alpine` tagged, which no CI host has)
        let digest = docker
            .inspect_registry_image(ccci_sandbox::FIXTURE_IMAGE, None)
            .await
            .expect("GET /distribution")
            .descriptor
            .digest
            .expect("the registry names a digest");
        let spec = ServiceSpec {
            name: Some(name.clone()),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(format!("{}@{digest}", ccci_sandbox::FIXTURE_IMAGE)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
                ..Default::default()
            }),
            ..Default::default()
        };
        docker
            .create_service(spec, None)
            .await
            .expect("create service");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let mut filters = HashMap::new();
            filters.insert("service".to_string(), vec![name.clone()]);
            let tasks = docker
                .list_tasks(Some(
                    ListTasksOptionsBuilder::default().filters(&filters).build(),
                ))
                .await
                .expect("list tasks");
            let running: Vec<_> = tasks
                .iter()
                .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
                .collect();
            if running.len() == 1 {
                let cid = running[0]
                    .status
                    .as_ref()
                    .and_then(|s| s.container_status.as_ref())
                    .and_then(|c| c.container_id.clone())
                    .expect("running task has a container");
                break cid;
            }
            assert!(
                Instant::now() < deadline,
                "service {name} did not converge to 1/1 in 90 s: {tasks:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });

    // 1) redis-cli inside the task's container
    let (code, out) = block_on(async {
        let docker = client().await;
        let exec = docker
            .create_exec(
                &container_id,
                bollard::exec::CreateExecOptions {
                    cmd: Some(vec!["redis-cli".to_string(), "ping".to_string()]),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .expect("create exec");
        let mut text = String::new();
        if let bollard::exec::StartExecResults::Attached { mut output, .. } =
            docker.start_exec(&exec.id, None).await.expect("start exec")
        {
            while let Some(Ok(chunk)) = output.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
        }
        let code = docker
            .inspect_exec(&exec.id)
            .await
            .expect("inspect exec")
            .exit_code;
        (code, text)
    });
    assert_eq!(code, Some(0), "redis-cli ping: {out}");
    assert_eq!(out.trim(), "PONG");

    // 2) raw RESP over TCP from inside the sandbox's network namespace to the container's IP
    let ip = block_on(async {
        let docker = client().await;
        let c = docker
            .inspect_container(&container_id, None)
            .await
            .expect("inspect task container");
        c.network_settings
            .and_then(|n| n.networks)
            .and_then(|n| n.values().find_map(|e| e.ip_address.clone()))
            .filter(|ip| !ip.is_empty())
            .expect("task container has an IP")
    });
    let mut s = info
        .netns_connect(&format!("{ip}:6379"))
        .expect("connect to redis from the sandbox netns");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(b"PING\r\n").expect("send PING");
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).expect("read PONG");
    assert_eq!(&buf[..n], b"+PONG\r\n");
}

#[test]
fn systemd_host_is_running_with_the_daemon_socket() {
    let info = sandbox();
    let (_, state) = block_on(ccci_sandbox::exec_in_host(
        info,
        &["systemctl", "is-system-running"],
    ))
    .expect("exec in host");
    let state = state.trim().to_string();
    let (_, failed) = block_on(ccci_sandbox::exec_in_host(
        info,
        &["systemctl", "--failed", "--no-legend", "--plain"],
    ))
    .expect("exec in host");
    assert!(
        state == "running" || state == "degraded",
        "systemctl is-system-running said {state:?}; failed units:\n{failed}"
    );
    if state == "degraded" {
        eprintln!("systemd host is degraded; failed units:\n{failed}");
    }
    let (code, pid1) =
        block_on(ccci_sandbox::exec_in_host(info, &["cat", "/proc/1/comm"])).expect("exec in host");
    assert_eq!((code, pid1.trim()), (0, "systemd"));
    let (code, out) = block_on(ccci_sandbox::exec_in_host(
        info,
        &["systemctl", "is-active", "docker.service"],
    ))
    .expect("exec in host");
    assert_eq!((code, out.trim()), (0, "active"), "docker.service stand-in");
    let (code, _) = block_on(ccci_sandbox::exec_in_host(
        info,
        &["test", "-S", "/var/run/docker.sock"],
    ))
    .expect("exec in host");
    assert_eq!(code, 0, "/var/run/docker.sock is not a socket in the host");
}

fn host_df_percent(info: &ccci_sandbox::SandboxInfo) -> u32 {
    let root = info.data_root.to_string_lossy().to_string();
    let (code, out) = block_on(ccci_sandbox::exec_in_host(
        info,
        &["df", "--output=pcent", &root],
    ))
    .expect("df in host");
    assert_eq!(code, 0, "df failed: {out}");
    out.lines()
        .nth(1)
        .and_then(|l| l.trim().trim_end_matches('%').parse().ok())
        .unwrap_or_else(|| panic!("cannot parse df output {out:?}"))
}

#[test]
#[serial_test::file_serial(sandbox)]
fn ballast_pushes_data_root_past_80_percent_and_back() {
    let info = sandbox();
    let (total, before) = info.data_root_usage().expect("usage");
    let pct = |used: u64| used * 100 / total;
    assert!(
        pct(before) < 80,
        "data-root already at {}% before the ballast",
        pct(before)
    );
    let ballast = info.ballast(85).expect("ballast");
    let (_, during) = info.data_root_usage().expect("usage");
    assert!(pct(during) > 80, "with ballast: {}%", pct(during));
    // The systemd host sees the same filesystem at the same path (what the prune measures).
    let seen = host_df_percent(info);
    assert!(seen > 80, "df in the host container says {seen}%");
    ballast.remove().expect("remove ballast");
    let (_, after) = info.data_root_usage().expect("usage");
    assert!(
        pct(after) < 80,
        "after removing the ballast: {}%",
        pct(after)
    );
    assert!(
        after <= before + (64 << 20),
        "usage did not come back: before {before}, after {after}"
    );
    assert!(host_df_percent(info) < 80);
}

#[test]
#[serial_test::file_serial(sandbox)]
fn image_builder_makes_old_untagged_and_tagged_images() {
    let info = sandbox();
    block_on(async {
        let docker = info.docker_negotiated().await.expect("client");
        let seed = images::unique_seed("builder-test");
        let two_days = 2 * 24 * 3600;
        let untagged =
            ImageSpec::unique_test_image(&format!("{seed}-u"), 2, two_days).expect("spec");
        let tag = format!("ccci-test/builder:{}", std::process::id());
        let tagged = ImageSpec::unique_test_image(&format!("{seed}-t"), 3, 60)
            .expect("spec")
            .tag(&tag);
        let uid = images::load(&docker, &untagged)
            .await
            .expect("load untagged");
        let tid = images::load(&docker, &tagged).await.expect("load tagged");

        let u = docker.inspect_image(&uid).await.expect("inspect untagged");
        assert_eq!(u.id.as_deref(), Some(uid.as_str()));
        assert!(u.repo_tags.unwrap_or_default().is_empty());
        assert!(u.repo_digests.unwrap_or_default().is_empty());
        assert_eq!(u.root_fs.and_then(|r| r.layers).map(|l| l.len()), Some(2));
        let created = u.created.expect("created");
        let created = chrono_like_age_secs(&created);
        assert!(
            (two_days - 120..two_days + 120).contains(&created),
            "untagged image created {created} s ago"
        );

        let t = docker.inspect_image(&tid).await.expect("inspect tagged");
        assert_eq!(t.repo_tags.unwrap_or_default(), vec![tag.clone()]);
        assert_eq!(t.root_fs.and_then(|r| r.layers).map(|l| l.len()), Some(3));

        for id in [uid, tid] {
            fixture::remove_local(&docker, &id).await.expect("cleanup");
        }
    });
}

/// Seconds since an RFC 3339 timestamp (Docker's `Created`), parsed by GNU `date`.
fn chrono_like_age_secs(ts: &str) -> u64 {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", ts, "+%s"])
        .output()
        .expect("date");
    let then: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("date could not parse {ts}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    now.saturating_sub(then)
}

#[test]
fn registry_answers_inside_the_namespace_with_the_fixture() {
    let info = sandbox();
    let out = info
        .netns_command(&[
            "busybox",
            "wget",
            "-qO-",
            &format!("http://{}/v2/_catalog", info.registry),
        ])
        .output()
        .expect("run busybox wget in the sandbox netns");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("library/redis"), "catalog: {text}");
}

/// The authenticated registry (docs/sandbox.md) asks for a user: an anonymous client and a
/// wrong password get 401, the sandbox's user 200; the mirror stays open. Raw HTTP with a
/// hand-made Basic header, nothing of the code under test.
#[test]
#[serial_test::file_serial(sandbox)] // the wrong states revoke the user for a while
fn the_authenticated_registry_asks_for_a_user_and_the_mirror_does_not() {
    use base64::Engine;
    use std::io::{Read, Write};
    let info = sandbox();
    assert_eq!(info.auth_registry, "127.0.0.1:5001");
    let status = |addr: &str, user_pass: Option<&str>| -> String {
        let mut s = info.netns_connect(addr).expect("connect in the namespace");
        let auth = user_pass
            .map(|up| {
                format!(
                    "Authorization: Basic {}\r\n",
                    base64::engine::general_purpose::STANDARD.encode(up)
                )
            })
            .unwrap_or_default();
        write!(
            s,
            "GET /v2/ HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.lines().next().unwrap_or("").to_string()
    };
    let reg = "127.0.0.1:5001";
    assert!(status(reg, None).contains(" 401 "), "anonymous");
    assert!(
        status(reg, Some("ccci-sandbox:not-the-password")).contains(" 401 "),
        "wrong password"
    );
    assert!(
        status(reg, Some("ccci-sandbox:sandbox-not-a-real-secret")).contains(" 200 "),
        "the sandbox user"
    );
    assert!(
        status("127.0.0.1:5000", None).contains(" 200 "),
        "the mirror"
    );
}
