//! Helpers shared by the `prune_*` scenarios: the docker CLI against the sandbox, test images,
//! running the prune binary through the recording proxy, a disk ballast.
#![allow(dead_code)]

pub mod swarm;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ccci_sandbox::images::{self, ImageSpec};
use ccci_tests::proxy::{violations, Recorded, RecordingProxy};
use ccci_tests::SandboxInfo;

pub const DAY: u64 = 86_400;
/// A service name the default run-stack pattern matches.
pub const RUN_STACK_SERVICE: &str = "ab1-0f3c9e_ci_commoninternet_net_app";
/// A pattern no service name matches.
pub const NO_RUN_PATTERN: &str = "^ccci-never-matches-anything$";

pub fn sb() -> &'static SandboxInfo {
    ccci_tests::sandbox()
}

/// `docker ARGS` against the sandbox: (success, stdout, stderr).
pub fn docker(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", &sb().docker_host)
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// `docker ARGS`, which must succeed; its stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let (ok, out, err) = docker(args);
    assert!(ok, "docker {args:?} failed: {err}\n{out}");
    out
}

/// Unique lowercase seed for names.
pub fn seed(label: &str) -> String {
    images::unique_seed(label).to_lowercase()
}

/// Load a small test image created `age_secs` ago, with optional tag; returns its id.
pub fn load_image(seed: &str, age_secs: u64, tag: Option<&str>) -> String {
    let mut spec = ImageSpec::unique_test_image(seed, 2, age_secs)
        .unwrap_or_else(|e| panic!("build test image: {e}"));
    if let Some(t) = tag {
        spec = spec.tag(t);
    }
    let info = sb();
    ccci_tests::block_on(async {
        let d = info
            .docker_negotiated()
            .await
            .unwrap_or_else(|e| panic!("sandbox docker: {e}"));
        images::load(&d, &spec)
            .await
            .unwrap_or_else(|e| panic!("load test image: {e}"))
    })
}

/// Deterministic noise (xorshift64*), so a layer is `len` bytes no other layer shares: unique,
/// incompressible, so removing the image frees what the layer holds.
pub fn noise(seed: &str, len: usize) -> Vec<u8> {
    let mut x: u64 = seed.bytes().fold(0x9E37_79B9_7F4A_7C15, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    }) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// One layer of `len` bytes of noise unique to `seed`.
pub fn noise_layer(seed: &str, len: usize) -> images::Layer {
    images::Layer::new()
        .file("/ccci-blob", 0o644, noise(seed, len))
        .unwrap_or_else(|e| panic!("layer: {e}"))
}

/// Load `spec` into the sandbox's daemon; its id.
pub fn load(spec: &ImageSpec) -> String {
    let info = sb();
    ccci_tests::block_on(async {
        let d = info
            .docker_negotiated()
            .await
            .unwrap_or_else(|e| panic!("sandbox docker: {e}"));
        images::load(&d, spec)
            .await
            .unwrap_or_else(|e| panic!("load: {e}"))
    })
}

/// The sandbox runs the containerd image store (`CCCI_SANDBOX_IMAGE_STORE=containerd`).
pub fn containerd_store() -> bool {
    sb().shape.image_store == ccci_sandbox::ImageStore::Containerd
}

/// An image pulled by digest, as each store lists it: the legacy store gives it no tag and one
/// repo digest; the containerd store names it by the digest-pinned reference it was pulled by
/// (a RepoTag `repo:tag@sha256:…` for a swarm pull, none for `docker pull repo@sha256:…`)
/// and one repo digest. Either way: no tag a user gave, one digest — a cached pull.
pub fn assert_pulled_by_digest(id: &str, what: &str) {
    let tags = docker_ok(&["image", "inspect", "--format", "{{json .RepoTags}}", id]);
    let digests = docker_ok(&["image", "inspect", "--format", "{{len .RepoDigests}}", id]);
    let tags: Vec<String> = serde_json::from_str(&tags).unwrap_or_default();
    assert_eq!(digests, "1", "precondition: {what}: one repo digest");
    if containerd_store() {
        assert!(
            tags.iter().all(|t| t.contains('@')),
            "precondition: {what}: only digest-pinned names on the containerd store, got {tags:?}"
        );
    } else {
        assert!(
            tags.is_empty(),
            "precondition: {what}: no tag, got {tags:?}"
        );
    }
}

pub fn image_exists(id: &str) -> bool {
    docker(&["image", "inspect", id]).0
}

pub fn container_exists(id: &str) -> bool {
    docker(&["container", "inspect", id]).0
}

pub fn volume_exists(name: &str) -> bool {
    docker(&["volume", "inspect", name]).0
}

/// Ids of every image that carries a tag right now.
pub fn tagged_image_ids() -> Vec<String> {
    let out = docker_ok(&["image", "ls", "--no-trunc", "--format", "{{.ID}} {{.Tag}}"]);
    out.lines()
        .filter(|l| !l.ends_with(" <none>"))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Remove a service if present and wait until its tasks' containers are gone.
pub fn remove_service(name: &str) {
    if docker(&["service", "inspect", name]).0 {
        docker_ok(&["service", "rm", name]);
    }
    wait_for(Duration::from_secs(60), || {
        docker_ok(&[
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={name}"),
        ])
        .is_empty()
    });
}

pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    f()
}

/// One run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub requests: Vec<Recorded>,
}

impl Run {
    /// The `--json` object (exactly one line on stdout).
    pub fn json(&self) -> serde_json::Value {
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "--json must print one line: {}",
            self.stdout
        );
        let v =
            serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("bad JSON {e}: {}", lines[0]));
        ccci_tests::schema::assert_valid(ccci_tests::schema::PRUNE_REPORT, &v);
        v
    }

    pub fn removed(&self, kind: &str) -> Vec<String> {
        self.json()["removed"][kind]
            .as_array()
            .unwrap_or_else(|| panic!("removed.{kind} missing"))
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// Run `ci-docker-prune ARGS --docker-host <proxy>` and assert the proxy saw no forbidden
/// request (no `all`, no volumes, no delete of a tagged image or by name).
pub fn prune(args: &[&str]) -> Run {
    prune_with(args, |_| {})
}

/// [`prune`], with `setup` arming the proxy first (a change of the world at a chosen request,
/// an error answer in the daemon's place).
pub fn prune_with(args: &[&str], setup: impl FnOnce(&RecordingProxy)) -> Run {
    prune_at(&sb().socket_path(), &tagged_image_ids(), args, setup)
}

/// [`prune_with`] against the daemon on `socket`; `tagged`: the ids of its tagged images.
pub fn prune_at(
    socket: &Path,
    tagged: &[String],
    args: &[&str],
    setup: impl FnOnce(&RecordingProxy),
) -> Run {
    prune_at_with_env(socket, tagged, args, setup, &[])
}

/// [`prune`] with `STATE_DIRECTORY` set, as systemd sets it for the unit.
pub fn prune_with_state_dir(args: &[&str], state_dir: &Path) -> Run {
    prune_at_with_env(
        &sb().socket_path(),
        &tagged_image_ids(),
        args,
        |_| {},
        &[("STATE_DIRECTORY", state_dir.as_os_str())],
    )
}

/// [`prune_at`] with `env` added to the binary's environment.
pub fn prune_at_with_env(
    socket: &Path,
    tagged: &[String],
    args: &[&str],
    setup: impl FnOnce(&RecordingProxy),
    env: &[(&str, &std::ffi::OsStr)],
) -> Run {
    let proxy =
        RecordingProxy::start(socket).unwrap_or_else(|e| panic!("start recording proxy: {e}"));
    setup(&proxy);
    let bin = ccci_tests::prune_bin().unwrap_or_else(|e| panic!("prune binary: {e}"));
    let out = assert_cmd::Command::new(bin)
        .args(args)
        .arg("--docker-host")
        .arg(proxy.docker_host())
        .env_remove("DOCKER_HOST")
        .envs(env.iter().copied())
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap_or_else(|e| panic!("run ci-docker-prune: {e}"));
    let requests = proxy.requests();
    let bad = violations(&requests, tagged);
    assert!(
        bad.is_empty(),
        "forbidden requests: {bad:#?}\nall requests: {requests:#?}"
    );
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        requests,
    }
}

/// The library's run (`ci_docker_prune::run`) against the sandbox through a recording proxy,
/// with `settings` (the proxy as docker host) and `hooks`; asserts no forbidden request.
pub fn run_lib(
    settings: ci_docker_prune::Settings,
    hooks: &mut dyn ci_docker_prune::Hooks,
) -> (ci_docker_prune::Report, Vec<Recorded>) {
    let proxy = RecordingProxy::start(&sb().socket_path())
        .unwrap_or_else(|e| panic!("start recording proxy: {e}"));
    let tagged = tagged_image_ids();
    let cfg = ci_docker_prune::Settings {
        docker_host: Some(proxy.docker_host()),
        ..settings
    }
    .validate(None)
    .unwrap_or_else(|e| panic!("settings: {e}"));
    let report = ccci_tests::block_on(ci_docker_prune::run(&cfg, false, hooks));
    let requests = proxy.requests();
    let bad = violations(&requests, &tagged);
    assert!(bad.is_empty(), "forbidden requests: {bad:#?}");
    (report, requests)
}

/// `RecordingProxy::before_first` matcher: the first request after the image listing (in a
/// real run: after the plan was made, before any removal).
pub fn after_image_listing(_: &Recorded, before: &[Recorded]) -> bool {
    before.last().is_some_and(|p| p.path == "/images/json")
}

/// Top-level images' sizes as the daemon lists them (`Size`), by id.
pub fn image_sizes() -> std::collections::HashMap<String, u64> {
    ccci_tests::block_on(async {
        let d = sb()
            .docker_negotiated()
            .await
            .unwrap_or_else(|e| panic!("sandbox docker: {e}"));
        d.list_images(None::<bollard::query_parameters::ListImagesOptions>)
            .await
            .unwrap_or_else(|e| panic!("list images: {e}"))
            .into_iter()
            .map(|i| (i.id, i.size.max(0) as u64))
            .collect()
    })
}

pub fn data_root() -> String {
    sb().data_root.to_string_lossy().into_owned()
}

/// A file on the data-root that pushes its usage to at least `pct` percent; removed on drop.
pub struct Ballast(PathBuf);

impl Ballast {
    pub fn fill_to(pct: u64) -> Ballast {
        let path = sb().data_root.join("ccci-prune-ballast");
        let _ = std::fs::remove_file(&path);
        let u = ci_docker_prune::gates::disk_usage(&sb().data_root)
            .unwrap_or_else(|e| panic!("statvfs data root: {e}"));
        let total = u.used + u.avail;
        let want = total * pct / 100 + total / 100;
        let need = want.saturating_sub(u.used).max(1 << 20);
        let ok = Command::new("fallocate")
            .args(["-l", &need.to_string()])
            .arg(&path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "fallocate {need} bytes at {}", path.display());
        let now = ci_docker_prune::gates::disk_usage(&sb().data_root)
            .unwrap_or_else(|e| panic!("statvfs data root: {e}"));
        assert!(
            now.percent() as u64 >= pct,
            "ballast left usage at {}%",
            now.percent()
        );
        Ballast(path)
    }
}

impl Drop for Ballast {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Best-effort cleanup of what a test created.
#[derive(Default)]
pub struct Cleanup {
    pub services: Vec<String>,
    pub containers: Vec<String>,
    pub images: Vec<String>,
    pub volumes: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for s in &self.services {
            let _ = docker(&["service", "rm", s]);
        }
        for c in &self.containers {
            let _ = docker(&["rm", "-f", c]);
        }
        for i in &self.images {
            let _ = docker(&["rmi", "-f", i]);
        }
        for v in &self.volumes {
            let _ = docker(&["volume", "rm", "-f", v]);
        }
    }
}

pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
