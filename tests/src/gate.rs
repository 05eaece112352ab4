//! Running gate checks from tests: against the shared sandbox (default) or a live host named
//! by `CCCI_TARGET`, through the same [`GateRun`] `ccci-verify gate` uses.

use ccci_checks::gate::{load_spec, GateRun, GateTarget};
use ccci_core::{GateSpec, Report};
use ccci_host::{Target, TargetSpec};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// The built-in gate spec `name`.
pub fn builtin_spec(name: &str) -> GateSpec {
    load_spec(name).unwrap_or_else(|e| panic!("built-in gate {name}: {e}"))
}

/// Exclusive use of the shared sandbox across processes: the same lock file
/// `#[serial_test::file_serial(sandbox)]` takes (both use flock), held while the value lives.
pub fn sandbox_lock() -> File {
    let path = std::env::temp_dir().join("serial-test-sandbox");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    f.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
    f
}

/// The sandbox's systemd host as a target (docker exec over the sandbox daemon's socket).
pub fn sandbox_target(info: &ccci_sandbox::SandboxInfo) -> Target {
    sandbox_gate_target(info).target
}

/// The sandbox as a gate target: its host, and its daemon's data-root as the expected root.
pub fn sandbox_gate_target(info: &ccci_sandbox::SandboxInfo) -> GateTarget {
    ccci_sandbox::gate_target(info).unwrap_or_else(|e| panic!("sandbox target: {e}"))
}

/// The target the gate tests run against: `CCCI_TARGET` (local, ssh://…, docker://…) or the
/// shared sandbox; returned with the name it was given.
pub fn target_from_env() -> (String, GateTarget) {
    let t = std::env::var("CCCI_TARGET").unwrap_or_else(|_| "sandbox".into());
    let tspec = TargetSpec::parse(&t).unwrap_or_else(|e| panic!("CCCI_TARGET: {e}"));
    let target = match &tspec {
        TargetSpec::Sandbox => sandbox_gate_target(crate::sandbox()),
        other => crate::block_on(Target::connect(other))
            .map(GateTarget::from)
            .unwrap_or_else(|e| panic!("CCCI_TARGET={t}: {e}")),
    };
    (t, target)
}

/// The gate run of `spec` for the target named `target_arg` (its params merged), the checks
/// in `only` (or all), comparing with `repo` at `rev`.
pub fn prepare_at(
    spec: &GateSpec,
    target_arg: &str,
    only: &[String],
    repo: &Path,
    rev: &str,
) -> GateRun {
    let tspec = TargetSpec::parse(target_arg).unwrap_or_else(|e| panic!("{target_arg}: {e}"));
    GateRun::prepare(
        spec.clone(),
        &spec.gate,
        only,
        &tspec,
        target_arg,
        repo,
        rev,
    )
    .unwrap_or_else(|e| panic!("gate {}: {e}", spec.gate))
}

/// [`prepare_at`] comparing with this workspace at HEAD.
pub fn prepare(spec: &GateSpec, target_arg: &str, only: &[String]) -> GateRun {
    prepare_at(spec, target_arg, only, &crate::workspace_root(), "HEAD")
}

/// Run a prepared gate on `target` (already bound with [`GateRun::bind`]).
/// The report, as JSON, validates against `docs/schema/gate-report.v1.json`.
pub fn run_prepared(run: GateRun, target: Target) -> Report {
    let report = crate::block_on(run.run(target, Arc::new(|_| {})))
        .unwrap_or_else(|e| panic!("{e}"))
        .report;
    let json = serde_json::to_value(&report).unwrap_or_else(|e| panic!("report as JSON: {e}"));
    crate::schema::assert_valid(crate::schema::GATE_REPORT, &json);
    report
}

/// Run the checks of `spec` (all, or those in `only`) against `target` named `target_arg`.
pub fn run_gate(spec: &GateSpec, target_arg: &str, target: GateTarget, only: &[String]) -> Report {
    let mut run = prepare(spec, target_arg, only);
    let target = run.bind(target);
    run_prepared(run, target)
}

/// Put a file into the sandbox's systemd host (through the Docker API's archive upload).
pub fn upload(info: &ccci_sandbox::SandboxInfo, path: &str, bytes: &[u8], mode: u32) {
    let (dir, name) = path
        .rsplit_once('/')
        .unwrap_or_else(|| panic!("{path} is not absolute"));
    let mut tarball = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(bytes.len() as u64);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_cksum();
    tarball
        .append_data(&mut h, name, bytes)
        .unwrap_or_else(|e| panic!("tar: {e}"));
    let body = tarball.into_inner().unwrap_or_else(|e| panic!("tar: {e}"));
    crate::block_on(async {
        let docker = info
            .docker_negotiated()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        docker
            .upload_to_container(
                &info.host_container,
                Some(
                    bollard::query_parameters::UploadToContainerOptionsBuilder::default()
                        .path(if dir.is_empty() { "/" } else { dir })
                        .build(),
                ),
                bollard::body_full(body.into()),
            )
            .await
            .unwrap_or_else(|e| panic!("upload {path}: {e}"));
    });
}

/// Run argv in the sandbox's systemd host; panics when it cannot run or exits non-zero.
pub fn host_sh(info: &ccci_sandbox::SandboxInfo, script: &str) -> String {
    let (code, out) = crate::block_on(ccci_sandbox::exec_in_host(info, &["sh", "-c", script]))
        .unwrap_or_else(|e| panic!("exec in host: {e}"));
    assert_eq!(code, 0, "`{script}` in the host exited {code}: {out}");
    out
}

/// The evidence of a check, rendered for a failure message.
pub fn explain(report: &Report, id: &str) -> String {
    let Some(c) = report.checks.iter().find(|c| c.id == id) else {
        return format!("{id}: not in the report");
    };
    let mut s = format!("{} {}: {}\n", c.verdict, c.id, c.detail);
    for e in &c.evidence {
        s.push_str(&format!(
            "  $ {}{}\n",
            e.command,
            e.exit.map(|x| format!(" (exit {x})")).unwrap_or_default()
        ));
        for l in e.output.lines().take(30) {
            s.push_str(&format!("    {l}\n"));
        }
    }
    s
}

/// [`host_sh`] for clean-up paths: reports a failure on stderr instead of panicking (a panic
/// while a failed test unwinds would abort the whole test binary).
pub fn host_sh_quiet(info: &ccci_sandbox::SandboxInfo, script: &str) {
    match crate::block_on(ccci_sandbox::exec_in_host(info, &["sh", "-c", script])) {
        Ok((0, _)) => {}
        Ok((code, out)) => eprintln!("clean-up `{script}` exited {code}: {out}"),
        Err(e) => eprintln!("clean-up `{script}` could not run: {e}"),
    }
}

/// Pull the probe's image by tag (`docker pull redis:7-alpine`, through the sandbox's registry
/// mirror), as a person or an earlier test leaves it: tagged.
pub fn pull_probe_image_by_tag(info: &ccci_sandbox::SandboxInfo) {
    use futures_util::StreamExt;
    crate::block_on(async {
        let docker = info
            .docker_negotiated()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (repo, tag) = ccci_sandbox::FIXTURE_IMAGE
            .split_once(':')
            .expect("the fixture is repo:tag");
        let mut pull = docker.create_image(
            Some(
                bollard::query_parameters::CreateImageOptionsBuilder::default()
                    .from_image(repo)
                    .tag(tag)
                    .build(),
            ),
            None,
            None,
        );
        while let Some(item) = pull.next().await {
            let item = item.unwrap_or_else(|e| panic!("pull {}: {e}", ccci_sandbox::FIXTURE_IMAGE));
            if let Some(err) = item.error_detail.and_then(|d| d.message) {
                panic!("pull {}: {err}", ccci_sandbox::FIXTURE_IMAGE);
            }
        }
    });
}

/// The probe's image as a CI host has it: by digest, no tag (`ccci_sandbox::fixture::untag_local`,
/// which `up_and_deploy` runs once per process). A test in the same binary may have pulled it by
/// tag since, so a test that runs the whole gate on the sandbox starts with this; a tag a
/// container holds stays (the test that made that container removes it).
pub fn untag_probe_image_if_free(info: &ccci_sandbox::SandboxInfo) {
    crate::block_on(async {
        let docker = info
            .docker_negotiated()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        match ccci_sandbox::fixture::untag_local(&docker).await {
            Ok(ccci_sandbox::fixture::LocalTag::Held(why)) => {
                eprintln!("note: {} keeps its tag: {why}", ccci_sandbox::FIXTURE_IMAGE)
            }
            Ok(_) => {}
            Err(e) => panic!("untag {}: {e}", ccci_sandbox::FIXTURE_IMAGE),
        }
    });
}
