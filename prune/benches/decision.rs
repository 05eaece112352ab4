//! Benchmark of the decision path (gates evaluated, plan built) against a shell script making
//! the same decision with the docker CLI (`benches/decision.sh`), side by side in one run, on
//! an ISOLATED sandbox (`ccci-prune-bench`, or `CCCI_BENCH_SANDBOX`) holding 300 swarm services
//! (replicas 0) and 2,000 images. Reports the ratio, the number of Docker API calls, and the
//! peak RSS of the `ci-docker-prune` process.
//!
//! Run: `cargo bench -p ci-docker-prune --bench decision` (root; brings the bench sandbox up and
//! takes it down again unless `CCCI_BENCH_KEEP=1`).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bollard::models::{
    ContainerCreateBody, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec,
    TaskSpecContainerSpec,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListImagesOptions, ListServicesOptions,
};
use ci_docker_prune::actions::{check_gates, make_plan};
use ci_docker_prune::docker::DockerClient;
use ci_docker_prune::{config::Threshold, Settings};
use serde_json::json;
use sha2::{Digest, Sha256};

const SERVICES: usize = 300;
const IMAGES: usize = 2000;
const CONTAINERS: usize = 50;
const PATTERN: &str = "^ccci-bench-never-matches$";
const LABEL: &str = "io.ccci.bench";

type R<T> = Result<T, Box<dyn std::error::Error>>;

fn layer_tar() -> R<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let data = b"ccci bench layer\n";
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, "bench.txt", &data[..])?;
    Ok(b.into_inner()?)
}

/// One docker-archive with `IMAGES` images sharing one layer: a quarter untagged and 2 days
/// old (build leftovers: the plan's candidates), a quarter untagged and 1 hour old, half tagged.
fn archive() -> R<Vec<u8>> {
    let layer = layer_tar()?;
    let diff = hex::encode(Sha256::digest(&layer));
    let now = chrono::Utc::now();
    let mut files: Vec<(String, Vec<u8>)> = vec![(format!("{diff}/layer.tar"), layer)];
    let mut manifest = Vec::new();
    for i in 0..IMAGES {
        let age = if i % 4 == 0 {
            chrono::Duration::days(2)
        } else {
            chrono::Duration::hours(1)
        };
        let created = (now - age - chrono::Duration::seconds(i as i64)).to_rfc3339();
        let cfg = json!({
            "architecture": "amd64", "os": "linux", "created": created,
            "config": {"Cmd": ["/bench"], "Labels": {LABEL: i.to_string()}},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff}")]},
            "history": [{"created": created, "created_by": "ccci bench"}],
        });
        let bytes = serde_json::to_vec(&cfg)?;
        let digest = hex::encode(Sha256::digest(&bytes));
        let tags = if i % 2 == 1 {
            json!([format!("ccci-bench/img:{i}")])
        } else {
            serde_json::Value::Null
        };
        manifest.push(json!({"Config": format!("{digest}.json"), "RepoTags": tags, "Layers": [format!("{diff}/layer.tar")]}));
        files.push((format!("{digest}.json"), bytes));
    }
    files.push(("manifest.json".into(), serde_json::to_vec(&manifest)?));
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, &data[..])?;
    }
    Ok(b.into_inner()?)
}

async fn populate(docker: &bollard::Docker) -> R<()> {
    let mut filters = HashMap::new();
    filters.insert("label".to_string(), vec![LABEL.to_string()]);
    let have = docker
        .list_images(Some(ListImagesOptions {
            filters: Some(filters),
            ..Default::default()
        }))
        .await?
        .len();
    if have < IMAGES {
        ccci_sandbox::images::load_archive(docker, archive()?).await?;
    }
    let services = docker
        .list_services(Some(ListServicesOptions::default()))
        .await?;
    let names: BTreeSet<String> = services
        .into_iter()
        .filter_map(|s| s.spec.and_then(|s| s.name))
        .collect();
    for i in 0..SERVICES {
        let name = format!("ccci-bench-svc-{i}");
        if names.contains(&name) {
            continue;
        }
        let spec = ServiceSpec {
            name: Some(name),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(0) }),
                ..Default::default()
            }),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some("ccci-bench/img:1".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        docker.create_service(spec, None).await?;
    }
    let containers = docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await?
        .len();
    for i in containers..CONTAINERS {
        let opts = CreateContainerOptionsBuilder::default()
            .name(&format!("ccci-bench-c{i}"))
            .build();
        let body = ContainerCreateBody {
            image: Some("ccci-bench/img:3".into()),
            cmd: Some(vec!["/bench".into()]),
            ..Default::default()
        };
        docker.create_container(Some(opts), body).await?;
    }
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Run a child, wait for it with wait4 to get its peak RSS (KiB). Linux charges a child with
/// the RSS its address space had before `exec` (a fork of this big bench process), so for a
/// true figure run the command through `--rss-of` (a fresh, small copy of this binary that
/// spawns it and reports the grandchild's peak RSS on stderr).
fn run_measured(cmd: &mut Command) -> R<(Duration, String, i64)> {
    let start = Instant::now();
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.ok_or("no stdout")?;
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut out)?;
    let mut err = String::new();
    if let Some(mut e) = child.stderr {
        std::io::Read::read_to_string(&mut e, &mut err)?;
    }
    let mut status = 0;
    // SAFETY: rusage is a plain C struct filled by wait4 for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if rc != pid {
        return Err("wait4 failed".into());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("{cmd:?} failed: status {status}").into());
    }
    let rss = err
        .lines()
        .find_map(|l| l.strip_prefix("ccci-bench-rss-kib "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(ru.ru_maxrss);
    Ok((start.elapsed(), out, rss))
}

/// `decision --rss-of CMD ARGS...`: run CMD, pass its stdout through, print its peak RSS.
fn rss_of(argv: &[String]) -> R<()> {
    let (d, out, rss) = run_measured_plain(Command::new(&argv[0]).args(&argv[1..]))?;
    let _ = d;
    print!("{out}");
    eprintln!("ccci-bench-rss-kib {rss}");
    Ok(())
}

fn run_measured_plain(cmd: &mut Command) -> R<(Duration, String, i64)> {
    let start = Instant::now();
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.ok_or("no stdout")?;
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut out)?;
    let mut status = 0;
    // SAFETY: as above.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if rc != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("{cmd:?} failed: status {status}").into());
    }
    Ok((start.elapsed(), out, ru.ru_maxrss))
}

fn main() -> R<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--rss-of") {
        return rss_of(&args[2..]);
    }
    if std::env::args().any(|a| a == "--list") {
        println!("decision: benchmark");
        return Ok(());
    }
    // The engine and image store from CCCI_SANDBOX_ENGINE / CCCI_SANDBOX_IMAGE_STORE; each shape
    // its own isolated bench sandbox (`ccci-prune-bench`, `ccci-pb-sid-ctrd`, ...).
    let shape = ccci_sandbox::Shape::from_env()?;
    let default_name = match shape.default_name().strip_prefix("ccci-") {
        Some(rest) => format!("ccci-pb-{rest}"),
        None => "ccci-prune-bench".to_string(),
    };
    let name = std::env::var("CCCI_BENCH_SANDBOX").unwrap_or(default_name);
    let mut cfg = ccci_sandbox::SandboxConfig::named(&name);
    cfg.shape = shape;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let t = Instant::now();
    let info = rt.block_on(ccci_sandbox::up(&cfg))?;
    eprintln!(
        "bench sandbox {name} up in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let host = info.docker_host.clone();
    let prune_cfg = Settings {
        threshold: Some(Threshold::Percent(0)),
        run_stack_pattern: Some(PATTERN.into()),
        docker_host: Some(host.clone()),
        ..Default::default()
    }
    .validate(None)?;

    // Gating calls with the store as it is before population (fresh: no services).
    let gating_calls = |label: &str| -> R<(u64, usize)> {
        rt.block_on(async {
            let client = DockerClient::connect(&prune_cfg.docker_host).await?;
            let before = client.api_calls();
            let check = check_gates(&prune_cfg, &client).await?;
            Ok::<_, Box<dyn std::error::Error>>((client.api_calls() - before, check.services.len()))
        })
        .inspect(|r| eprintln!("gating ({label}): {} API calls for {} services", r.0, r.1))
    };
    let (calls_before, services_before) = gating_calls("before population")?;

    let t = Instant::now();
    rt.block_on(async {
        let docker = info.docker_negotiated().await?;
        populate(&docker).await
    })?;
    eprintln!("populated in {:.1}s", t.elapsed().as_secs_f64());
    let (calls_after, services_after) = gating_calls("after population")?;

    // 1. In-process decision: connect + gates + plan.
    let mut lib_times = Vec::new();
    let mut lib_calls = 0;
    let mut plan_ids = BTreeSet::new();
    for _ in 0..20 {
        let start = Instant::now();
        let (calls, plan) = rt.block_on(async {
            let client = DockerClient::connect(&prune_cfg.docker_host).await?;
            let check = check_gates(&prune_cfg, &client).await?;
            assert!(
                check.closed_by.is_none(),
                "a gate is closed: {:?}",
                check.decisions
            );
            let plan = make_plan(&prune_cfg, &client, check.services, false).await?;
            Ok::<_, Box<dyn std::error::Error>>((client.api_calls(), plan))
        })?;
        lib_times.push(start.elapsed());
        lib_calls = calls;
        plan_ids = plan
            .containers
            .iter()
            .map(|c| format!("container {}", c.id))
            .chain(plan.images.iter().map(|i| format!("image {}", i.id)))
            .collect();
    }

    // The daemon's own cost of listing the images (both sides pay it).
    let mut list_times = Vec::new();
    for _ in 0..10 {
        let d = rt.block_on(async {
            let client = DockerClient::connect(&prune_cfg.docker_host).await?;
            let start = Instant::now();
            client.list_images().await?;
            Ok::<_, Box<dyn std::error::Error>>(start.elapsed())
        })?;
        list_times.push(d);
    }
    let list_floor = median(list_times);

    // The floor: the daemon's own time for every call the binary's dry run makes (version
    // negotiation, services, tasks, containers, images, build cache), each the median of 10,
    // summed. No client can decide faster than the daemon answers.
    let mut per_call: Vec<(&str, Vec<Duration>)> = vec![
        ("GET /version (negotiation)", vec![]),
        ("GET /services", vec![]),
        ("GET /tasks", vec![]),
        ("GET /containers/json", vec![]),
        ("GET /images/json", vec![]),
        ("GET /system/df?type=build-cache", vec![]),
    ];
    for _ in 0..10 {
        let times = rt.block_on(async {
            let t = Instant::now();
            let client = DockerClient::connect(&prune_cfg.docker_host).await?;
            let mut v = vec![t.elapsed()];
            let t = Instant::now();
            client.list_services().await?;
            v.push(t.elapsed());
            let t = Instant::now();
            client.list_tasks().await?;
            v.push(t.elapsed());
            let t = Instant::now();
            client.list_containers().await?;
            v.push(t.elapsed());
            let t = Instant::now();
            client.list_images().await?;
            v.push(t.elapsed());
            let t = Instant::now();
            client.list_build_cache().await?;
            v.push(t.elapsed());
            Ok::<_, Box<dyn std::error::Error>>(v)
        })?;
        for (slot, d) in per_call.iter_mut().zip(times) {
            slot.1.push(d);
        }
    }
    let per_call: Vec<(&str, Duration)> =
        per_call.into_iter().map(|(n, v)| (n, median(v))).collect();
    let floor: Duration = per_call.iter().map(|(_, d)| *d).sum();

    // 2. The binary, as a process (dry run: also lists build cache).
    let bin = env!("CARGO_BIN_EXE_ci-docker-prune");
    let me = std::env::current_exe()?;
    let mut bin_times = Vec::new();
    let mut rss_kib = 0;
    for _ in 0..10 {
        let (d, out, rss) = run_measured(
            Command::new(&me)
                .arg("--rss-of")
                .arg(bin)
                .args([
                    "--dry-run",
                    "--json",
                    "--threshold",
                    "0",
                    "--run-stack-pattern",
                    PATTERN,
                    "--docker-host",
                    &host,
                ])
                .env_remove("DOCKER_HOST"),
        )?;
        let v: serde_json::Value = serde_json::from_str(out.trim())?;
        let n = v["removed"]["images"].as_array().map(Vec::len).unwrap_or(0);
        assert_eq!(n, IMAGES / 4, "binary dry run lists {n} images");
        bin_times.push(d);
        rss_kib = rss_kib.max(rss);
    }

    // 3. The shell script making the same decision with the docker CLI.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/decision.sh");
    let mut sh_times = Vec::new();
    let mut sh_ids = BTreeSet::new();
    for _ in 0..3 {
        let (d, out, _) = run_measured(
            Command::new("sh")
                .arg(&script)
                .env("DOCKER_HOST", &host)
                .env("THRESHOLD", "0")
                .env("PATTERN", PATTERN)
                .env("UNTIL_SECS", "86400"),
        )?;
        sh_times.push(d);
        sh_ids = out.lines().map(str::to_string).collect();
    }
    if plan_ids != sh_ids {
        // the script reads `docker image ls --digests`, written for the legacy store
        eprintln!(
            "note: the shell script decided differently ({} vs {} candidates) on {}",
            sh_ids.len(),
            plan_ids.len(),
            cfg.shape
        );
        assert_eq!(
            cfg.shape.image_store,
            ccci_sandbox::ImageStore::Containerd,
            "the shell script and the library decided differently"
        );
    }

    let lib = median(lib_times);
    let binm = median(bin_times);
    let sh = median(sh_times);
    println!(
        "engine {} ({}, API {}), {}",
        cfg.shape.engine, info.engine_version, info.api_version, cfg.shape.image_store
    );
    println!("decision path, {services_after} services, {IMAGES}+ images, {CONTAINERS} containers; same decision: {} candidates", plan_ids.len());
    println!(
        "  library (connect+gates+plan) median of 20: {:>9.1} ms, {lib_calls} API calls",
        lib.as_secs_f64() * 1e3
    );
    println!(
        "  ci-docker-prune --dry-run    median of 10: {:>9.1} ms, peak RSS {:.1} MiB",
        binm.as_secs_f64() * 1e3,
        rss_kib as f64 / 1024.0
    );
    println!(
        "  shell + docker CLI           median of 3:  {:>9.1} ms",
        sh.as_secs_f64() * 1e3
    );
    println!(
        "  of which the daemon's GET /images/json alone (median of 10): {:.1} ms",
        list_floor.as_secs_f64() * 1e3
    );
    println!(
        "  ratio shell/library: {:.1}x   shell/binary: {:.1}x",
        sh.as_secs_f64() / lib.as_secs_f64(),
        sh.as_secs_f64() / binm.as_secs_f64()
    );
    println!("  gating API calls: {calls_before} with {services_before} services, {calls_after} with {services_after} services");
    for (n, d) in &per_call {
        println!(
            "  daemon: {n:<34} median of 10: {:>7.1} ms",
            d.as_secs_f64() * 1e3
        );
    }
    println!(
        "  floor (the daemon's time for the dry run's calls): {:.1} ms; binary/floor {:.2}x, library/floor(without build cache) {:.2}x",
        floor.as_secs_f64() * 1e3,
        binm.as_secs_f64() / floor.as_secs_f64(),
        lib.as_secs_f64() / (floor - per_call[5].1).as_secs_f64()
    );

    if std::env::var_os("CCCI_BENCH_KEEP").is_none() {
        rt.block_on(ccci_sandbox::down(&cfg))?;
        eprintln!("bench sandbox {name} down");
    }
    Ok(())
}
