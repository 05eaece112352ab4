//! `up`, `down`, `status`: bring the processes, mounts and namespace up in order, and take
//! every one of them down again (also when a previous run died without `down`).

use std::path::Path;
use std::time::{Duration, Instant};

use bollard::models::{LocalNodeState, SwarmInitRequest};
use bollard::Docker;

use crate::error::{Result, SandboxError};
use crate::{fixture, host, rootfs, sys, SandboxConfig, SandboxInfo, REGISTRY_ADDR};

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SandboxError::Config(format!("blocking task failed: {e}")))?
}

/// Bring the sandbox up. Idempotent: a healthy sandbox is reused as it is. A sandbox that died
/// without `down` (processes gone, mounts / loop device / netns / pidfiles left) is cleaned up
/// first. Serialised across processes by a file lock beside `run_dir`.
pub async fn up(cfg: &SandboxConfig) -> Result<SandboxInfo> {
    cfg.validate()?;
    sys::check_prerequisites()?;
    let lock_path = cfg.layout().lock();
    let _lock = blocking(move || sys::lock_file(&lock_path)).await?;
    if let Some(info) = healthy(cfg).await {
        if info.shape != cfg.shape {
            return Err(SandboxError::Config(format!(
                "sandbox {} is running as {}, not {}: run `ccci-verify sandbox down` first, or give this shape its own name (unset CCCI_SANDBOX_NAME)",
                cfg.name, info.shape, cfg.shape
            )));
        }
        // what a test (or a person) did to the registry's users is undone: a warm sandbox
        // authenticates as a cold one does
        let htpasswd = cfg.layout().htpasswd();
        blocking(move || crate::registry_auth::ensure_htpasswd(&htpasswd)).await?;
        return Ok(info);
    }
    cleanup(cfg, false).await?;
    match start(cfg).await {
        Ok(info) => Ok(info),
        Err(e) => {
            // Leave nothing half-started behind; the logs stay in state_dir.
            let _ = cleanup(cfg, false).await;
            Err(e)
        }
    }
}

/// Tear the sandbox down, keeping the caches (rootfs archive, registry storage, logs).
pub async fn down(cfg: &SandboxConfig) -> Result<()> {
    down_with(cfg, false).await
}

/// Tear the sandbox down; with `purge`, also delete its state dir (registry storage, logs).
/// The shared rootfs cache in `cache_dir` always stays.
pub async fn down_with(cfg: &SandboxConfig, purge: bool) -> Result<()> {
    cfg.validate()?;
    sys::check_prerequisites()?;
    let lock_path = cfg.layout().lock();
    let _lock = blocking(move || sys::lock_file(&lock_path)).await?;
    cleanup(cfg, purge).await
}

/// The sandbox if it is up and healthy (daemon answers, registry answers, systemd host
/// running), else `None`.
pub async fn status(cfg: &SandboxConfig) -> Result<Option<SandboxInfo>> {
    cfg.validate()?;
    Ok(healthy(cfg).await)
}

async fn healthy(cfg: &SandboxConfig) -> Option<SandboxInfo> {
    // A busy machine can make one answer slow; a sandbox other processes are using must not be
    // torn down for that, so the service checks get three tries. Dead processes or missing
    // mounts fail at once.
    for attempt in 0..3 {
        match health(cfg).await {
            Health::Up(info) => return Some(*info),
            Health::Down => return None,
            Health::NotAnswering if attempt < 2 => {
                tokio::time::sleep(Duration::from_millis(1000)).await
            }
            Health::NotAnswering => return None,
        }
    }
    None
}

enum Health {
    Up(Box<SandboxInfo>),
    /// Not up (no info, dead process, missing mount): no point in asking again.
    Down,
    /// Processes and mounts are there but a service did not answer as expected.
    NotAnswering,
}

async fn health(cfg: &SandboxConfig) -> Health {
    let p = cfg.layout();
    let Some(info) = std::fs::read_to_string(p.info_file())
        .ok()
        .and_then(|t| serde_json::from_str::<SandboxInfo>(&t).ok())
    else {
        return Health::Down;
    };
    if !info_matches(&p.info(), &info) {
        return Health::Down;
    }
    let alive = |f: &Path| sys::read_pidfile(f).map(sys::pid_alive).unwrap_or(false);
    if !alive(&p.dockerd_pid()) || !alive(&p.registry_pid()) || !alive(&p.auth_registry_pid()) {
        return Health::Down;
    }
    if !sys::is_mounted(&p.data_root()) || !sys::is_private_mount(&p.data_view()) {
        return Health::Down;
    }
    let netns = info.netns.clone();
    let reg_ok = tokio::task::spawn_blocking(move || {
        // the mirror answers anyone, the authenticated registry refuses an anonymous client
        let answers = |addr: &str, code: u16| {
            sys::netns_http(&netns, addr, "GET", "/v2/", "*/*")
                .map(|(c, _)| c == code)
                .unwrap_or(false)
        };
        answers(REGISTRY_ADDR, 200) && answers(crate::AUTH_REGISTRY_ADDR, 401)
    })
    .await
    .unwrap_or(false);
    if !reg_ok {
        return Health::NotAnswering;
    }
    let Ok(docker) = info.docker() else {
        return Health::NotAnswering;
    };
    let Ok(Ok(docker)) =
        tokio::time::timeout(Duration::from_secs(5), docker.negotiate_version()).await
    else {
        return Health::NotAnswering;
    };
    let swarm = docker
        .info()
        .await
        .ok()
        .and_then(|i| i.swarm)
        .and_then(|s| s.local_node_state);
    if swarm != Some(LocalNodeState::ACTIVE) {
        return Health::NotAnswering;
    }
    if !host::host_running(&docker, &info).await {
        return Health::NotAnswering;
    }
    Health::Up(Box::new(info))
}

/// The info a sandbox wrote is this layout's: every path and name matches; shape and versions
/// are what `start` found (a layout knows neither), so they are not compared.
fn info_matches(layout: &SandboxInfo, written: &SandboxInfo) -> bool {
    let expected = SandboxInfo {
        shape: written.shape.clone(),
        engine_version: written.engine_version.clone(),
        api_version: written.api_version.clone(),
        ..layout.clone()
    };
    *written == expected
}

/// With `CCCI_SANDBOX_TRACE` set, print when each start step finished (to stderr).
fn trace(step: &str, t0: Instant) {
    if std::env::var_os("CCCI_SANDBOX_TRACE").is_some() {
        eprintln!(
            "ccci-sandbox: {:>6.1} s  {step}",
            t0.elapsed().as_secs_f64()
        );
    }
}

async fn start(cfg: &SandboxConfig) -> Result<SandboxInfo> {
    let p = cfg.layout();
    let info = p.info();
    // the state and run dirs are marked as this sandbox's: `down` cleans only marked dirs
    for (d, default) in [
        (p.state_dir(), crate::layout::default_state_dir(&cfg.name)),
        (p.run_dir(), crate::layout::default_run_dir(&cfg.name)),
    ] {
        crate::layout::claim_dir(d, &cfg.name, Some(&default))
            .map_err(|e| SandboxError::io("claim dirs", d, e))?;
    }
    for d in [
        &cfg.cache_dir,
        &p.registry_store(),
        &p.auth_registry_store(),
        &p.logs(),
        &p.exec_root(),
    ] {
        std::fs::create_dir_all(d).map_err(|e| SandboxError::io("create dirs", d, e))?;
    }

    // The rootfs (debootstrap, ~35 s cold) is prepared while the daemons start.
    let cache_dir = cfg.cache_dir.clone();
    let t0 = Instant::now();
    let rootfs = tokio::task::spawn_blocking(move || {
        let r = rootfs::ensure_rootfs_archive(&cache_dir);
        trace("rootfs archive ready", t0);
        r
    });

    let daemons = async {
        // The engine's binaries (fetched from Debian trixie/sid into the cache when needed).
        let (engine, cache) = (cfg.shape.engine.clone(), cfg.cache_dir.clone());
        let bins =
            blocking(move || crate::engine::ensure(&engine, &cache, &rootfs::mirror())).await?;
        trace(&format!("engine: {}", bins.description), t0);
        let cfg2 = cfg.clone();
        blocking(move || start_netns_and_disk(&cfg2)).await?;
        trace("netns + data-root", t0);
        let cfg2 = cfg.clone();
        blocking(move || start_registry(&cfg2)).await?;
        let cfg2 = cfg.clone();
        blocking(move || start_auth_registry(&cfg2)).await?;
        trace("registries answering", t0);
        let docker = start_dockerd(cfg, &bins).await?;
        check_image_store(&docker, cfg).await?;
        trace("dockerd answering", t0);
        init_swarm(&docker, &info).await?;
        trace("swarm active", t0);
        fixture::ensure_pushed(&docker, &info).await?;
        trace("fixture in the registry", t0);
        Ok::<_, SandboxError>(docker)
    };
    let (docker, rootfs) = tokio::join!(daemons, rootfs);
    let docker = docker?;
    let rootfs = rootfs.map_err(|e| SandboxError::Config(format!("rootfs task failed: {e}")))??;
    host::start_host(&docker, cfg, &info, &rootfs).await?;
    trace("systemd host running", t0);

    let mut info = info;
    info.shape = cfg.shape.clone();
    let version = docker
        .version()
        .await
        .map_err(|e| SandboxError::docker("GET /version", e))?;
    info.engine_version = version.version.unwrap_or_default();
    info.api_version = version.api_version.unwrap_or_default();
    let json = serde_json::to_string_pretty(&info)
        .map_err(|e| SandboxError::Config(format!("serialising info: {e}")))?;
    std::fs::write(p.info_file(), json)
        .map_err(|e| SandboxError::io("write info", p.info_file(), e))?;
    Ok(info)
}

/// The daemon runs the image store the shape asks for: an engine that ignores
/// `features.containerd-snapshotter` (Docker 20.10 does, without a word) would otherwise give
/// a sandbox that says "containerd" and runs the legacy store, and every suite run on it would
/// claim coverage it does not have.
async fn check_image_store(docker: &Docker, cfg: &SandboxConfig) -> Result<()> {
    let info = docker
        .info()
        .await
        .map_err(|e| SandboxError::docker("GET /info", e))?;
    let rows = info.driver_status.unwrap_or_default();
    let running = if image_store_of(&rows) {
        crate::ImageStore::Containerd
    } else {
        crate::ImageStore::Legacy
    };
    if running == cfg.shape.image_store {
        return Ok(());
    }
    let p = cfg.layout().info();
    Err(SandboxError::StartFailed {
        step: "image store".into(),
        reason: format!(
            "asked for the {} image store, but dockerd {} runs the {running} store (storage driver {}): \
             the containerd image store needs Docker 24 or later (--engine trixie or sid)",
            cfg.shape.image_store,
            info.server_version.unwrap_or_default(),
            info.driver.unwrap_or_default(),
        ),
        log: p.dockerd_log.clone(),
        log_tail: sys::log_tail(&p.dockerd_log, 20),
    })
}

/// `true` when `GET /info`'s `DriverStatus` says the containerd snapshotter
/// (`["driver-type", "io.containerd.snapshotter.v1"]`) holds the images.
fn image_store_of(rows: &[Vec<String>]) -> bool {
    rows.iter().any(|r| {
        r.first().map(String::as_str) == Some("driver-type")
            && r.get(1)
                .is_some_and(|v| v.starts_with("io.containerd.snapshotter"))
    })
}

fn start_netns_and_disk(cfg: &SandboxConfig) -> Result<()> {
    let p = cfg.layout();
    let netns = p.netns();
    sys::run("netns", &["ip", "netns", "add", &netns])?;
    sys::run("netns", &["ip", "-n", &netns, "link", "set", "lo", "up"])?;

    // A fresh, sparse ext4 image each time: the first pull after `up` is cold, and usage is
    // deterministic. No reserved blocks, so "used %" is simply used/size.
    let _ = std::fs::remove_file(p.data_img());
    let f = std::fs::File::create(p.data_img())
        .map_err(|e| SandboxError::io("data image", p.data_img(), e))?;
    f.set_len(cfg.data_size_bytes)
        .map_err(|e| SandboxError::io("data image", p.data_img(), e))?;
    drop(f);
    let img = p.data_img().to_string_lossy().to_string();
    sys::run(
        "data image",
        &[
            "mkfs.ext4",
            "-q",
            "-F",
            "-m",
            "0",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1",
            "-L",
            "ccci-data",
            &img,
        ],
    )?;
    let root = p.data_root();
    std::fs::create_dir_all(&root).map_err(|e| SandboxError::io("data root", &root, e))?;
    let root_s = root.to_string_lossy().to_string();
    // `-o loop` sets autoclear: the loop device goes away with the last unmount.
    sys::run("data image", &["mount", "-o", "loop", &img, &root_s])?;
    sys::run("data image", &["mount", "--make-private", &root_s])?;
    // The systemd host must see the data-root filesystem at the data-root path (the prune
    // measures its usage there). Binding the data-root itself into a container whose own
    // rootfs lives under it is a recursive self-bind: dockerd makes its root a shared mount,
    // every `docker cp`/archive upload re-binds it, and the copies multiply until mount(2)
    // fails with ENOSPC. So the host gets a *view*: a plain (non-recursive) bind of the
    // filesystem taken before dockerd starts, made private, outside the daemon root.
    let view = p.data_view().to_string_lossy().to_string();
    std::fs::create_dir_all(p.data_view())
        .map_err(|e| SandboxError::io("data view", p.data_view(), e))?;
    sys::run("data view", &["mount", "--bind", &root_s, &view])?;
    sys::run("data view", &["mount", "--make-private", &view])?;
    Ok(())
}

fn registry_config(store: &Path) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: {REGISTRY_ADDR}\n",
        store.display()
    )
}

fn start_registry(cfg: &SandboxConfig) -> Result<()> {
    let p = cfg.layout();
    let info = p.info();
    std::fs::write(p.registry_cfg(), registry_config(&p.registry_store()))
        .map_err(|e| SandboxError::io("registry", p.registry_cfg(), e))?;
    serve_registry(
        &info.netns,
        "registry",
        &p.registry_cfg(),
        &p.registry_pid(),
        &info.registry_log,
        REGISTRY_ADDR,
        200,
    )
}

/// The registry that asks for a user (`registry_auth`): its htpasswd file written first, so
/// a cold and a warm start serve the same user.
fn start_auth_registry(cfg: &SandboxConfig) -> Result<()> {
    let p = cfg.layout();
    crate::registry_auth::ensure_htpasswd(&p.htpasswd())?;
    let text = crate::registry_auth::config(&p.auth_registry_store(), &p.htpasswd());
    std::fs::write(p.auth_registry_cfg(), text)
        .map_err(|e| SandboxError::io("auth registry", p.auth_registry_cfg(), e))?;
    serve_registry(
        &p.netns(),
        "auth registry",
        &p.auth_registry_cfg(),
        &p.auth_registry_pid(),
        &p.auth_registry_log(),
        crate::AUTH_REGISTRY_ADDR,
        401,
    )
}

/// Start `docker-registry serve CFG` in the namespace and wait until `addr/v2/` answers an
/// anonymous client with `code` (200 for the open mirror, 401 for the one asking for a user).
fn serve_registry(
    netns: &str,
    step: &str,
    cfg_file: &Path,
    pidfile: &Path,
    log: &Path,
    addr: &str,
    code: u16,
) -> Result<()> {
    let bin = sys::which("docker-registry").unwrap_or_else(|| "docker-registry".into());
    let argv = vec![
        bin.to_string_lossy().to_string(),
        "serve".to_string(),
        cfg_file.to_string_lossy().to_string(),
    ];
    let pid = sys::spawn_in_netns(step, netns, &argv, log)?;
    std::fs::write(pidfile, format!("{pid}\n")).map_err(|e| SandboxError::io(step, pidfile, e))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((c, _)) = sys::netns_http(netns, addr, "GET", "/v2/", "*/*") {
            if c == code {
                return Ok(());
            }
        }
        if !sys::pid_alive(pid) || Instant::now() > deadline {
            return Err(SandboxError::StartFailed {
                step: step.into(),
                reason: if sys::pid_alive(pid) {
                    format!("{addr}/v2/ did not answer {code} within 30 s")
                } else {
                    "docker-registry exited".into()
                },
                log: log.to_path_buf(),
                log_tail: sys::log_tail(log, 30),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The daemon's config: the trust key out of /etc/docker, and the image store of the shape.
pub(crate) fn daemon_config(cfg: &SandboxConfig) -> serde_json::Value {
    let p = cfg.layout();
    let mut daemon_json = serde_json::json!({
        "deprecated-key-path": p.dockerd_key(),
    });
    if cfg.shape.image_store == crate::ImageStore::Containerd {
        // dockerd's managed containerd keeps its root under the data-root
        // (`<data-root>/containerd/daemon`) and its state under the exec-root, so the image
        // content and snapshots land on the sandbox's loop ext4 and go with `down`.
        daemon_json["features"] = serde_json::json!({ "containerd-snapshotter": true });
    }
    daemon_json
}

async fn start_dockerd(cfg: &SandboxConfig, bins: &crate::engine::EngineBins) -> Result<Docker> {
    let p = cfg.layout();
    let info = p.info();
    // An explicit daemon config so the machine's /etc/docker/daemon.json never applies; it
    // also moves the daemon's trust key out of /etc/docker (20.10 writes key.json there).
    let daemon_json = daemon_config(cfg);
    std::fs::write(p.daemon_json(), format!("{daemon_json}\n"))
        .map_err(|e| SandboxError::io("dockerd", p.daemon_json(), e))?;
    let s = |x: &Path| x.to_string_lossy().to_string();
    // `env PATH=…`: dockerd finds the engine's `containerd` (and containerd its shim) first,
    // bookworm's `runc` and `docker-init` after them.
    let argv = vec![
        "env".into(),
        format!("PATH={}", bins.path_env()),
        s(&bins.dockerd),
        "--config-file".into(),
        s(&p.daemon_json()),
        "-H".into(),
        info.docker_host.clone(),
        "--pidfile".into(),
        s(&p.dockerd_pid()),
        "--exec-root".into(),
        s(&p.exec_root()),
        "--data-root".into(),
        s(&info.data_root),
        "--registry-mirror".into(),
        format!("http://{REGISTRY_ADDR}"),
        "--insecure-registry".into(),
        REGISTRY_ADDR.into(),
        "--cgroup-parent".into(),
        p.cgroup_parent(),
        "--shutdown-timeout".into(),
        "5".into(),
        "--userland-proxy=false".into(),
    ];
    let pid = sys::spawn_in_netns("dockerd", &info.netns, &argv, &info.dockerd_log)?;
    let fail = |reason: String| SandboxError::StartFailed {
        step: "dockerd".into(),
        reason,
        log: info.dockerd_log.clone(),
        log_tail: sys::log_tail(&info.dockerd_log, 40),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if p.socket().exists() {
            if let Ok(d) = info.docker() {
                if let Ok(Ok(d)) =
                    tokio::time::timeout(Duration::from_secs(3), d.negotiate_version()).await
                {
                    if d.ping().await.is_ok() {
                        return Ok(d);
                    }
                }
            }
        }
        if !sys::pid_alive(pid) {
            return Err(fail("dockerd exited".into()));
        }
        if Instant::now() > deadline {
            return Err(fail(format!(
                "{} did not answer /_ping within 60 s",
                info.docker_host
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn init_swarm(docker: &Docker, info: &SandboxInfo) -> Result<()> {
    let state = docker
        .info()
        .await
        .map_err(|e| SandboxError::docker("swarm", e))?
        .swarm
        .and_then(|s| s.local_node_state);
    if state == Some(LocalNodeState::ACTIVE) {
        return Ok(());
    }
    docker
        .init_swarm(SwarmInitRequest {
            advertise_addr: Some("127.0.0.1".into()),
            listen_addr: Some("127.0.0.1:2377".into()),
            ..Default::default()
        })
        .await
        .map_err(|e| SandboxError::StartFailed {
            step: "swarm init".into(),
            reason: e.to_string(),
            log: info.dockerd_log.clone(),
            log_tail: sys::log_tail(&info.dockerd_log, 30),
        })?;
    Ok(())
}

/// Stop everything of sandbox `cfg` and remove its runtime traces. Safe to run on a sandbox
/// that is healthy, half-dead or absent.
async fn cleanup(cfg: &SandboxConfig, purge: bool) -> Result<()> {
    let p = cfg.layout();
    let name = cfg.name.clone();
    // Only directories this sandbox made (marked, or its defaults) are searched for processes,
    // unmounted and removed: a run dir of `/run` must not take the machine's dockerd with it.
    let owns_run = crate::layout::owns_dir(
        p.run_dir(),
        &name,
        Some(&crate::layout::default_run_dir(&name)),
    );
    let owns_state = crate::layout::owns_dir(
        p.state_dir(),
        &name,
        Some(&crate::layout::default_state_dir(&name)),
    );
    if (p.run_dir().exists() && !owns_run) || (p.state_dir().exists() && !owns_state) {
        return Err(SandboxError::Teardown(format!(
            "refusing to clean up: {} and {} must be directories sandbox {name} made (with {} naming it); nothing was stopped or removed",
            p.run_dir().display(),
            p.state_dir().display(),
            crate::layout::marker_file(Path::new("DIR")).display()
        )));
    }
    // Polite first: SIGTERM to dockerd lets it stop the containers (the systemd host gets
    // SIGRTMIN+3), shut containerd and the shims down and unmount its layers.
    blocking(move || {
        let mut problems = Vec::new();
        let run_dir_s = p.run_dir().to_string_lossy().to_string();

        let mut dockerd: Vec<u32> = sys::read_pidfile(&p.dockerd_pid())
            .filter(|pid| {
                sys::cmdline(*pid)
                    .map(|c| c.contains(&format!("{run_dir_s}/")))
                    .unwrap_or(false)
            })
            .into_iter()
            .collect();
        // Also a dockerd whose pidfile is gone but whose command line names our run_dir.
        for pid in sys::pids_with_cmdline(&format!("--exec-root {} ", p.exec_root().display())) {
            if !dockerd.contains(&pid) {
                dockerd.push(pid);
            }
        }
        let left = sys::terminate(&dockerd, Duration::from_secs(20));
        if !left.is_empty() {
            problems.push(format!("dockerd pids {left:?} survived SIGKILL"));
        }

        // Whatever is left: containerd, shims (their command lines name the exec-root),
        // the registry (names our state dir) and container processes (in our cgroups).
        // (with a trailing '/', so sandbox `ccci` never matches `ccci-life`'s paths)
        let mut rest = sys::pids_with_cmdline(&format!("{run_dir_s}/"));
        rest.extend(sys::pids_with_cmdline(&p.registry_cfg().to_string_lossy()));
        rest.extend(sys::pids_with_cmdline(
            &p.auth_registry_cfg().to_string_lossy(),
        ));
        let cg = sys::cgroup_dirs(&p.cgroup_parent());
        rest.extend(sys::cgroup_pids(&cg));
        rest.sort();
        rest.dedup();
        let left = sys::terminate(&rest, Duration::from_secs(3));
        if !left.is_empty() {
            problems.push(format!("pids {left:?} survived SIGKILL"));
        }
        let left = sys::remove_cgroup_trees(&sys::cgroup_dirs(&p.cgroup_parent()));
        if !left.is_empty() {
            problems.push(format!("cgroups left: {left:?}"));
        }

        // Mounts: layers and netns bind mounts under the data-root / exec-root, the data-root
        // itself, the netns file.
        let mut roots = vec![p.run_dir().to_path_buf(), p.data_root()];
        roots.extend(p.netns_files());
        for m in sys::mounts_under(&roots) {
            if let Err(e) = sys::umount_all(&m) {
                problems.push(e.to_string());
            }
        }
        for dev in sys::loop_devices_for(&p.data_img()) {
            if let Err(e) = sys::run("teardown", &["losetup", "-d", &dev]) {
                problems.push(e.to_string());
            }
        }
        if sys::netns_exists(&p.netns()) {
            if let Err(e) = sys::run("teardown", &["ip", "netns", "delete", &p.netns()]) {
                // `ip netns delete` fails when the file is there but no longer a mount.
                let f = p.netns_file();
                if std::fs::remove_file(&f).is_err() && f.exists() {
                    problems.push(e.to_string());
                }
            }
        }
        if p.run_dir().exists() {
            if let Err(e) = std::fs::remove_dir_all(p.run_dir()) {
                problems.push(format!("remove {}: {e}", p.run_dir().display()));
            }
        }
        // containerd's shims keep their sockets in /run/containerd/s whatever the exec-root;
        // remove the directories when they are empty (another sandbox may still use them).
        // dockerd also always creates /run/docker/plugins.
        for d in [
            "/run/containerd/s",
            "/run/containerd",
            "/run/docker/plugins",
            "/run/docker",
        ] {
            let _ = std::fs::remove_dir(d);
        }
        if p.data_img().exists() {
            let _ = std::fs::remove_file(p.data_img());
        }
        let root = p.data_root();
        if root.exists() && !sys::is_mounted(&root) {
            let _ = std::fs::remove_dir(&root);
        }
        if purge && p.state_dir().exists() {
            if let Err(e) = std::fs::remove_dir_all(p.state_dir()) {
                problems.push(format!("remove {}: {e}", p.state_dir().display()));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SandboxError::Teardown(problems.join("; ")))
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_store_is_read_from_the_driver_status() {
        // as Docker 28.5 answers on each store (GET /info, DriverStatus), and 20.10's overlay2
        let ctrd = vec![vec![
            "driver-type".to_string(),
            "io.containerd.snapshotter.v1".to_string(),
        ]];
        assert!(image_store_of(&ctrd));
        let overlay2 = vec![
            vec!["Backing Filesystem".to_string(), "extfs".to_string()],
            vec!["Supports d_type".to_string(), "true".to_string()],
            vec!["Native Overlay Diff".to_string(), "true".to_string()],
        ];
        assert!(!image_store_of(&overlay2));
        assert!(!image_store_of(&[]));
    }

    #[test]
    fn a_written_info_with_shape_and_versions_is_the_layouts() {
        let cfg = SandboxConfig::for_shape(crate::Shape {
            engine: crate::Engine::Sid,
            image_store: crate::ImageStore::Containerd,
            ..Default::default()
        });
        let layout = cfg.layout().info();
        let mut written = layout.clone();
        written.shape = cfg.shape.clone();
        written.engine_version = "28.5.2+dfsg4".into();
        written.api_version = "1.51".into();
        assert!(info_matches(&layout, &written));
        written.data_root = "/elsewhere".into();
        assert!(!info_matches(&layout, &written));
    }

    #[test]
    fn the_containerd_store_is_a_daemon_feature() {
        let mut cfg = SandboxConfig::named("x");
        assert!(daemon_config(&cfg).get("features").is_none());
        cfg.shape.image_store = crate::ImageStore::Containerd;
        assert_eq!(
            daemon_config(&cfg)["features"]["containerd-snapshotter"],
            serde_json::json!(true)
        );
    }
}
