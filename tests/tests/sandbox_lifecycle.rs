//! Lifecycle of an isolated sandbox (name `ccci-life`, never the shared one): `up`, `status`,
//! `down` twice in a row leave nothing behind; a sandbox whose processes were killed with
//! SIGKILL (what CI does) is recovered by the next `up`.
//!
//! "Nothing behind" is checked independently of the library's own teardown code: live
//! processes from /proc, mounts from /proc/self/mountinfo, loop devices from `losetup`,
//! network namespaces from `ip netns list`, the run dir and the cgroups.

use std::path::Path;
use std::time::Duration;

use ccci_sandbox::SandboxConfig;
use ccci_tests::block_on;

fn cfg() -> SandboxConfig {
    SandboxConfig::named("ccci-life")
}

fn live_pids_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for ent in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = ent.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if cmd.contains(needle) && !zombie {
            out.push((pid, cmd));
        }
    }
    out
}

fn leftovers(cfg: &SandboxConfig) -> Vec<String> {
    let mut left = Vec::new();
    let run = format!("{}/", cfg.run_dir.display());
    for (pid, cmd) in live_pids_mentioning(&run) {
        left.push(format!("process {pid}: {cmd}"));
    }
    for (pid, cmd) in live_pids_mentioning(&cfg.state_dir.join("registry.yml").to_string_lossy()) {
        left.push(format!("process {pid}: {cmd}"));
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let data_root = cfg.data_root().to_string_lossy().to_string();
    let netns_file = format!("/run/netns/{}", cfg.netns());
    for line in mountinfo.lines() {
        let mp = line.split(' ').nth(4).unwrap_or("");
        if mp.starts_with(&run) || mp.starts_with(&data_root) || mp.ends_with(&netns_file) {
            left.push(format!("mount {mp}"));
        }
    }
    let losetup = std::process::Command::new("losetup")
        .arg("-a")
        .output()
        .expect("losetup -a");
    let img = cfg.state_dir.join("data.img").to_string_lossy().to_string();
    for line in String::from_utf8_lossy(&losetup.stdout).lines() {
        if line.contains(&img) {
            left.push(format!("loop device {line}"));
        }
    }
    let netns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    for line in String::from_utf8_lossy(&netns.stdout).lines() {
        if line.split_whitespace().next() == Some(cfg.netns().as_str()) {
            left.push(format!("netns {line}"));
        }
    }
    if cfg.run_dir.exists() {
        left.push(format!("run dir {}", cfg.run_dir.display()));
    }
    for ctrl in std::fs::read_dir("/sys/fs/cgroup")
        .expect("cgroups")
        .flatten()
    {
        let p = ctrl.path().join(cfg.cgroup_parent());
        if p.exists() {
            left.push(format!("cgroup {}", p.display()));
        }
    }
    left
}

fn assert_up(cfg: &SandboxConfig) {
    let st = block_on(ccci_sandbox::status(cfg)).expect("status");
    let info = st.expect("status says the sandbox is not up right after up");
    assert_eq!(
        info.docker_host,
        format!("unix://{}", cfg.socket().display())
    );
    assert!(Path::new(&format!("/var/run/netns/{}", cfg.netns())).exists());
    block_on(async {
        let d = info.docker_negotiated().await.expect("client");
        d.ping().await.expect("ping");
        let sw = d.info().await.expect("info").swarm.expect("swarm info");
        assert_eq!(
            sw.local_node_state,
            Some(bollard::models::LocalNodeState::ACTIVE)
        );
    });
}

fn mounts_mentioning(needle: &str) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// `docker cp`-style uploads into the systemd host (what `deploy` does) make the daemon mount
/// the container's binds; with the data-root bound into a container that lives under it, those
/// mounts used to multiply until mount(2) failed with ENOSPC.
fn archive_uploads_do_not_multiply_mounts(cfg: &SandboxConfig, info: &ccci_sandbox::SandboxInfo) {
    let needle = format!("/{}/", cfg.name);
    let before = mounts_mentioning(&needle);
    block_on(async {
        let docker = info.docker_negotiated().await.expect("client");
        for i in 0..20 {
            let mut b = tar::Builder::new(Vec::new());
            let data = format!("upload {i}\n");
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, "tmp/ccci-upload", data.as_bytes())
                .expect("tar");
            let body = b.into_inner().expect("tar");
            docker
                .upload_to_container(
                    &info.host_container,
                    Some(
                        bollard::query_parameters::UploadToContainerOptionsBuilder::default()
                            .path("/")
                            .build(),
                    ),
                    bollard::body_full(body.into()),
                )
                .await
                .unwrap_or_else(|e| panic!("upload {i}: {e}"));
        }
    });
    let after = mounts_mentioning(&needle);
    assert!(
        after <= before + 2,
        "20 archive uploads grew the mounts of {} from {before} to {after}",
        cfg.name
    );
}

#[test]
#[serial_test::file_serial(ccci_life)]
fn up_status_down_twice_leaves_nothing_behind() {
    let cfg = cfg();
    // Start from nothing, whatever an earlier run left.
    block_on(ccci_sandbox::down(&cfg)).expect("initial down");
    for round in 0..2 {
        let info = block_on(ccci_sandbox::up(&cfg))
            .unwrap_or_else(|e| panic!("round {round}: up failed: {e}"));
        // up again is a cheap no-op on a healthy sandbox and returns the same info
        let again = block_on(ccci_sandbox::up(&cfg)).expect("second up");
        assert_eq!(info, again);
        assert_up(&cfg);
        if round == 0 {
            archive_uploads_do_not_multiply_mounts(&cfg, &info);
        }
        block_on(ccci_sandbox::down(&cfg)).unwrap_or_else(|e| panic!("round {round}: down: {e}"));
        assert_eq!(block_on(ccci_sandbox::status(&cfg)).expect("status"), None);
        let left = leftovers(&cfg);
        assert!(left.is_empty(), "round {round}: left behind: {left:#?}");
        // down on a sandbox that is already down is fine
        block_on(ccci_sandbox::down(&cfg)).expect("down twice");
    }
}

#[test]
#[serial_test::file_serial(ccci_life)]
fn up_recovers_a_sandbox_killed_with_sigkill() {
    let cfg = cfg();
    block_on(ccci_sandbox::up(&cfg)).expect("up");
    assert_up(&cfg);
    // What CI does to us: every process killed, nothing cleaned up.
    let mut victims: Vec<u32> = live_pids_mentioning(&format!("{}/", cfg.run_dir.display()))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    victims.extend(
        live_pids_mentioning(&cfg.state_dir.join("registry.yml").to_string_lossy())
            .into_iter()
            .map(|(p, _)| p),
    );
    assert!(
        victims.len() >= 3,
        "expected dockerd, containerd, registry: {victims:?}"
    );
    for pid in &victims {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        block_on(ccci_sandbox::status(&cfg)).expect("status"),
        None,
        "status must not report a killed sandbox as up"
    );
    // Its mounts, loop device, netns and pidfiles are still there; up must cope.
    block_on(ccci_sandbox::up(&cfg)).expect("up after kill -9");
    assert_up(&cfg);
    block_on(ccci_sandbox::down(&cfg)).expect("down");
    let left = leftovers(&cfg);
    assert!(
        left.is_empty(),
        "left behind after recovery + down: {left:#?}"
    );
}

#[test]
fn a_run_dir_the_sandbox_did_not_make_is_never_cleaned() {
    // a directory with someone else's files and a process whose command line names it: what a
    // `CCCI_SANDBOX_RUN_DIR=/run` would point `down` at
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::write(run.join("keep"), "not the sandbox's").unwrap();
    let mut bystander = std::process::Command::new("sh")
        .args(["-c", "sleep 60"])
        .arg(format!("{}/", run.display()))
        .spawn()
        .unwrap();
    let mut cfg = SandboxConfig::named("ccci-guard");
    cfg.run_dir = run.clone();
    cfg.state_dir = t.path().join("state");
    let err = block_on(ccci_sandbox::down_with(&cfg, true)).expect_err("down of an unmarked dir");
    assert!(err.to_string().contains("refusing to clean up"), "{err}");
    // up first clears a half-dead sandbox of that name: it refuses the same way
    let err = block_on(ccci_sandbox::up(&cfg)).expect_err("up in an unmarked, non-empty dir");
    assert!(err.to_string().contains("refusing to clean up"), "{err}");
    assert!(
        run.join("keep").exists(),
        "the directory's files were removed"
    );
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "a process naming the directory was killed"
    );
    let _ = bystander.kill();
    let _ = bystander.wait();
}

#[test]
fn invalid_names_are_rejected_before_touching_the_machine() {
    let bad = SandboxConfig::named("../etc");
    let err = block_on(ccci_sandbox::up(&bad)).expect_err("up with a bad name");
    assert!(
        err.to_string().contains("invalid sandbox configuration"),
        "{err}"
    );
    assert!(!Path::new("/var/run/netns/ccci-../etc").exists());
}

#[test]
#[serial_test::file_serial(ccci_fail)]
fn a_failed_start_names_the_step_with_the_daemon_log_and_leaves_nothing() {
    // A socket path longer than a unix socket address allows: dockerd itself refuses to listen.
    let mut cfg = SandboxConfig::named("ccci-fail");
    cfg.run_dir = format!("/run/ccci-sandbox/{}", "x".repeat(100)).into();
    let err = block_on(ccci_sandbox::up(&cfg)).expect_err("up must fail");
    let text = err.to_string();
    assert!(text.contains("step `dockerd` failed"), "{text}");
    assert!(text.contains("dockerd.log"), "{text}");
    assert!(
        text.contains("docker.sock") && text.contains("bind"),
        "the daemon's own reason is missing: {text}"
    );
    let left = leftovers(&cfg);
    assert!(left.is_empty(), "a failed up left: {left:#?}");
    block_on(ccci_sandbox::down_with(&cfg, true)).expect("purge");
    assert!(!cfg.state_dir.exists());
    let _ = std::fs::remove_file(format!("/run/ccci-sandbox/{}.lock", "x".repeat(100)));
}

/// Docker 20.10 ignores `features.containerd-snapshotter` without a word: a sandbox asked for
/// the containerd image store on the bookworm engine would run the legacy store while saying
/// "containerd". `up` refuses it, naming the step and both stores, and leaves nothing.
#[test]
#[serial_test::file_serial(ccci_fail)]
fn the_containerd_store_on_an_engine_without_it_fails_the_start() {
    let mut cfg = SandboxConfig::named("ccci-fail");
    cfg.shape.engine = ccci_sandbox::Engine::Bookworm;
    cfg.shape.image_store = ccci_sandbox::ImageStore::Containerd;
    let err = block_on(ccci_sandbox::up(&cfg)).expect_err("up must fail");
    let text = err.to_string();
    assert!(text.contains("step `image store` failed"), "{text}");
    assert!(
        text.contains("asked for the containerd image store")
            && text.contains("runs the legacy store"),
        "{text}"
    );
    let left = leftovers(&cfg);
    assert!(left.is_empty(), "a failed up left: {left:#?}");
    block_on(ccci_sandbox::down_with(&cfg, true)).expect("purge");
    assert!(!cfg.state_dir.exists());
}

async fn host_out(info: &ccci_sandbox::SandboxInfo, argv: &[&str]) -> (i64, String) {
    ccci_sandbox::exec_in_host(info, argv)
        .await
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

#[test]
#[serial_test::file_serial(ccci_life)]
fn deploy_installs_enables_replaces_and_reports_failures() {
    let cfg = cfg();
    let info = block_on(ccci_sandbox::up(&cfg)).expect("up");
    let unit =
        "[Unit]\nDescription=ccci deploy test\n[Service]\nType=oneshot\nExecStart=/bin/true\n";
    let timer = "[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n";
    let mut d = ccci_sandbox::Deploy {
        prune_bin: Some("/usr/bin/true".into()),
        units: vec![
            ("ccci-t.service".into(), unit.into()),
            ("ccci-t.timer".into(), timer.into()),
        ],
        source_tree: vec![
            ("nix/a.nix".into(), b"{ a = 1; }\n".to_vec()),
            ("nix/sub/b.nix".into(), b"{ b = 2; }\n".to_vec()),
        ],
        docker_config: Some(ccci_sandbox::Deploy::sandbox_docker_config()),
        ..Default::default()
    };
    block_on(async {
        ccci_sandbox::deploy(&info, &d).await.expect("deploy");
        assert_eq!(
            host_out(&info, &["systemctl", "is-enabled", "ccci-t.timer"]).await,
            (0, "enabled\n".into())
        );
        assert_eq!(
            host_out(&info, &["systemctl", "is-active", "ccci-t.timer"]).await,
            (0, "active\n".into())
        );
        assert_eq!(
            host_out(
                &info,
                &[
                    "stat",
                    "-c",
                    "%a",
                    "/root/.docker/config.json",
                    "/usr/local/bin/ci-docker-prune"
                ]
            )
            .await,
            (0, "600\n755\n".into())
        );
        assert_eq!(
            host_out(
                &info,
                &["cat", "/root/cc-ci/nix/a.nix", "/root/cc-ci/nix/sub/b.nix"]
            )
            .await,
            (0, "{ a = 1; }\n{ b = 2; }\n".into())
        );
        // The same deploy again changes nothing and succeeds.
        ccci_sandbox::deploy(&info, &d).await.expect("deploy again");
        // A file deleted from the tree disappears from the host.
        d.source_tree.pop();
        ccci_sandbox::deploy(&info, &d)
            .await
            .expect("deploy without b.nix");
        let (code, _) = host_out(&info, &["test", "-e", "/root/cc-ci/nix/sub/b.nix"]).await;
        assert_ne!(code, 0, "b.nix survived a deploy that no longer has it");
        // A timer whose service does not exist cannot start: deploy says which command failed.
        d.units = vec![("ccci-orphan.timer".into(), timer.into())];
        let err = ccci_sandbox::deploy(&info, &d)
            .await
            .expect_err("a timer without its service must fail");
        let text = err.to_string();
        assert!(
            text.contains("systemctl enable --now ccci-orphan.timer"),
            "{text}"
        );
        assert!(
            !text.contains(&ccci_sandbox::Deploy::sandbox_docker_config()),
            "the docker config leaked into an error"
        );
    });
    block_on(ccci_sandbox::down(&cfg)).expect("down");
}
