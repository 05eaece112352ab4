//! Running gate checks from tests: against the shared sandbox (default) or a live host named
//! by `CCCI_TARGET`, with the same catalog, spec and runner `ccci-verify gate` uses.

use ccci_checks::{Ctx, Params, BUILTIN_GATES};
use ccci_core::redact::Redactor;
use ccci_core::{GateSpec, Planned, Report};
use ccci_host::{Target, TargetSpec};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// The built-in gate spec `name`.
pub fn builtin_spec(name: &str) -> GateSpec {
    let (_, text) = BUILTIN_GATES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no built-in gate {name}"));
    GateSpec::parse(text, name).unwrap_or_else(|e| panic!("built-in gate {name}: {e}"))
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
    Target::docker_exec(
        TargetSpec::Sandbox,
        &info.docker_host,
        &info.host_container,
        "sandbox",
    )
    .unwrap_or_else(|e| panic!("sandbox target: {e}"))
}

/// The target the gate tests run against: `CCCI_TARGET` (local, ssh://…, docker://…) or the
/// shared sandbox, and its params from `spec` (with the sandbox's own data-root).
pub fn target_from_env(spec: &GateSpec) -> (Target, Params) {
    let t = std::env::var("CCCI_TARGET").unwrap_or_else(|_| "sandbox".into());
    let tspec = TargetSpec::parse(&t).unwrap_or_else(|e| panic!("CCCI_TARGET: {e}"));
    let mut params = Params::from_table(&spec.params_for(tspec.kind(), &t))
        .unwrap_or_else(|e| panic!("gate {}: {e}", spec.gate));
    let target = match &tspec {
        TargetSpec::Sandbox => {
            let info = crate::sandbox();
            params.store.docker_root = Some(info.data_root.display().to_string());
            sandbox_target(info)
        }
        TargetSpec::Local => Target::local(),
        TargetSpec::Ssh { user, host, port } => {
            crate::block_on(Target::ssh(user.clone(), host.clone(), *port))
                .unwrap_or_else(|e| panic!("{e}"))
        }
        TargetSpec::Docker { name } => Target::docker_exec(
            tspec.clone(),
            &ccci_host::target::local_docker_host(),
            name,
            &t,
        )
        .unwrap_or_else(|e| panic!("{e}")),
    };
    (target, params)
}

/// Run the checks of `spec` (all, or those in `only`) against `target` with `params`.
pub fn run_gate(spec: &GateSpec, target: Target, params: Params, only: &[String]) -> Report {
    let repo = crate::workspace_root();
    let rev = ccci_nix::GitRepo::open(&repo)
        .and_then(|g| g.resolve("HEAD"))
        .unwrap_or_else(|_| "unknown".into());
    run_gate_at(spec, target, params, only, &repo, &rev)
}

/// [`run_gate`] with an explicit repository and revision.
pub fn run_gate_at(
    spec: &GateSpec,
    target: Target,
    params: Params,
    only: &[String],
    repo: &Path,
    rev: &str,
) -> Report {
    let selected = spec.select(only).unwrap_or_else(|e| panic!("{e}"));
    let planned: Vec<Planned<Ctx>> = selected
        .into_iter()
        .map(|s| {
            let check =
                ccci_checks::find(&s.id).unwrap_or_else(|| panic!("unknown check id {}", s.id));
            Planned { spec: s, check }
        })
        .collect();
    let label = target.label().to_string();
    let redactor = Redactor::new();
    let ctx = Arc::new(Ctx::new(
        target,
        params,
        repo.to_path_buf(),
        rev.to_string(),
        redactor.clone(),
    ));
    let results = crate::block_on(ccci_core::run_checks(
        planned,
        ctx,
        redactor,
        Arc::new(|_| {}),
    ));
    Report::new(&spec.gate, &label, rev, results)
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
