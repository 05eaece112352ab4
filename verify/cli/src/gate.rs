//! `ccci-verify gate` and `ccci-verify checks`.

use crate::CliError;
use anyhow::anyhow;
use ccci_checks::{Ctx, Params, BUILTIN_GATES};
use ccci_core::redact::Redactor;
use ccci_core::render::{self, Format};
use ccci_core::{GateSpec, Planned, Progress};
use ccci_host::TargetSpec;
use clap::Args;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct GateArgs {
    /// A built-in gate (`2pc`) or a path to a gate spec (.toml).
    pub gate: String,
    /// sandbox | local | ssh://[user@]host[:port] | docker://NAME
    #[arg(long, default_value = "sandbox")]
    pub target: String,
    /// The git repository the host is compared with (repro.* checks).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// The revision of the repository: sha, branch, tag or HEAD.
    #[arg(long, default_value = "HEAD")]
    pub rev: String,
    /// human | json | junit | markdown
    #[arg(long, default_value = "human")]
    pub format: String,
    /// Write the report to FILE instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Run only this check (repeatable).
    #[arg(long = "check", value_name = "ID")]
    pub checks: Vec<String>,
}

/// A built-in gate by name, or a spec file by path.
pub fn load_spec(gate: &str) -> Result<GateSpec, CliError> {
    if let Some((_, text)) = BUILTIN_GATES.iter().find(|(n, _)| *n == gate) {
        return GateSpec::parse(text, &format!("built-in gate {gate}"))
            .map_err(|e| CliError::Usage(anyhow!("{e}")));
    }
    let p = Path::new(gate);
    if gate.ends_with(".toml") || p.exists() {
        return GateSpec::load(p).map_err(|e| CliError::Usage(anyhow!("{e}")));
    }
    let names: Vec<&str> = BUILTIN_GATES.iter().map(|(n, _)| *n).collect();
    Err(CliError::Usage(anyhow!(
        "{}",
        ccci_core::SpecError::UnknownGate(gate.to_string(), names.join(", "))
    )))
}

/// Pair every selected spec entry with its catalog check; an id the catalog lacks is a spec
/// error naming `origin` (the gate name or spec path the user gave).
pub fn plan(spec: &GateSpec, origin: &str, only: &[String]) -> Result<Vec<Planned<Ctx>>, CliError> {
    let selected = spec.select(only).map_err(|e| CliError::Usage(anyhow!(e)))?;
    let mut out = Vec::new();
    for s in selected {
        let check = ccci_checks::find(&s.id).ok_or_else(|| {
            CliError::Usage(anyhow!(
                "gate spec {origin} (gate {}): [[checks]] id: unknown check id `{}` (see `ccci-verify checks`)",
                spec.gate,
                s.id
            ))
        })?;
        out.push(Planned { spec: s, check });
    }
    Ok(out)
}

/// The parameters of `spec` for a target; a bad value is a spec error naming `origin` and the
/// target override it came from.
pub fn target_params(
    spec: &GateSpec,
    origin: &str,
    kind: &str,
    target: &str,
) -> Result<Params, CliError> {
    Params::from_table(&spec.params_for(kind, target)).map_err(|e| {
        let mut scope = String::new();
        for k in [kind, target] {
            if spec.targets.contains_key(k) && !scope.contains(&format!("\"{k}\"")) {
                scope.push_str(&format!("[targets.\"{k}\".params] merged: "));
            }
        }
        CliError::Usage(anyhow!(
            "gate spec {origin} (gate {}): {scope}{e}",
            spec.gate
        ))
    })
}

/// Every per-target override must make valid parameters, not only the one this run uses: a
/// typo in `[targets.ssh.params]` is reported on the sandbox run too.
pub fn validate_params(spec: &GateSpec, origin: &str) -> Result<(), CliError> {
    target_params(spec, origin, "", "")?;
    for key in spec.targets.keys() {
        let kind = match key.as_str() {
            "ssh" | "docker" => key.clone(),
            _ => TargetSpec::parse(key)
                .map(|t| t.kind().to_string())
                .map_err(|_| {
                    CliError::Usage(anyhow!(
                        "gate spec {origin} (gate {}): [targets.\"{key}\"] names no target: expected sandbox, local, ssh, docker or a full target such as ssh://root@host",
                        spec.gate
                    ))
                })?,
        };
        target_params(spec, origin, &kind, key)?;
    }
    Ok(())
}

pub fn list(gate: Option<&str>) -> Result<u8, CliError> {
    match gate {
        Some(g) => {
            let spec = load_spec(g)?;
            let planned = plan(&spec, g, &[])?;
            validate_params(&spec, g)?;
            println!("gate {}: {}", spec.gate, spec.title);
            for p in planned {
                println!(
                    "  {:<38} {:<9} group={:<8} {}",
                    p.spec.id,
                    if p.spec.blocking {
                        "blocking"
                    } else {
                        "advisory"
                    },
                    p.spec.group_key(),
                    p.check.title()
                );
            }
        }
        None => {
            for c in ccci_checks::catalog() {
                println!("  {:<38} {}", c.id(), c.title());
            }
            let names: Vec<&str> = BUILTIN_GATES.iter().map(|(n, _)| *n).collect();
            println!("built-in gates: {}", names.join(", "));
        }
    }
    Ok(0)
}

pub async fn run(args: GateArgs) -> Result<u8, CliError> {
    let format: Format = args
        .format
        .parse()
        .map_err(|e: String| CliError::Usage(anyhow!(e)))?;
    let spec = load_spec(&args.gate)?;
    let planned = plan(&spec, &args.gate, &args.checks)?;
    let tspec = TargetSpec::parse(&args.target).map_err(|e| CliError::Usage(anyhow!("{e}")))?;
    if let Some(path) = &args.output {
        // find out now, not after a long run, that the report cannot be written (the file is
        // created if missing and left as it is until the report replaces it)
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                CliError::Usage(anyhow!(
                    "--output {}: cannot write the report there: {e}",
                    path.display()
                ))
            })?;
    }
    validate_params(&spec, &args.gate)?;
    let mut params = target_params(&spec, &args.gate, tspec.kind(), &args.target)?;

    // the revision: required when repro checks run
    let needs_repo = planned.iter().any(|p| p.spec.id.starts_with("repro."));
    let rev = match ccci_nix::GitRepo::open(&args.repo).and_then(|g| g.resolve(&args.rev)) {
        Ok(sha) => sha,
        Err(e) if needs_repo => {
            return Err(CliError::Usage(anyhow!(
                "--repo {} --rev {}: {e}",
                args.repo.display(),
                args.rev
            )))
        }
        Err(_) => "unknown".to_string(),
    };

    let (target, sandbox) = crate::target::resolve(&tspec, &args.repo).await?;
    if let Some(info) = &sandbox {
        // the sandbox's daemon root is its loop-mounted data-root, wherever its name puts it
        params.store.docker_root = Some(info.data_root.display().to_string());
    }
    target
        .ensure_reachable()
        .await
        .map_err(|e| CliError::Unreachable(anyhow!("{e}")))?;
    let label = target.label().to_string();
    let redactor = Redactor::new();
    let ctx = Arc::new(Ctx::new(
        target,
        params,
        args.repo.clone(),
        rev.clone(),
        redactor.clone(),
    ));

    let live = std::io::stderr().is_terminal();
    let progress: Arc<dyn Fn(Progress) + Send + Sync> = Arc::new(move |p| {
        if !live {
            return;
        }
        match p {
            Progress::Started { id } => eprintln!("  …     {id}"),
            Progress::Retrying {
                id,
                attempt,
                detail,
            } => {
                eprintln!("  retry {id} (attempt {attempt}): {detail}")
            }
            Progress::Finished(r) => eprintln!("  {}", render::progress_line(&r, true)),
        }
    });
    let results = ccci_core::run_checks(planned, ctx, redactor, progress).await;
    let report = ccci_core::Report::new(&spec.gate, &label, &rev, results);
    let color = args.output.is_none() && std::io::stdout().is_terminal();
    let text = render::render(&report, format, color);
    match &args.output {
        Some(path) => {
            std::fs::write(path, &text).map_err(|e| {
                CliError::Runtime(anyhow!(
                    "cannot write the report to {}: {e}",
                    path.display()
                ))
            })?;
            let s = &report.summary;
            eprintln!(
                "ccci-verify: gate {} on {}: {} pass, {} fail, {} error, {} skip; report in {}",
                report.gate,
                report.target,
                s.pass,
                s.fail,
                s.error,
                s.skip,
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(report.exit_code() as u8)
}
