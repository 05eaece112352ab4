//! `ccci-verify gate` and `ccci-verify checks`.

use crate::CliError;
use anyhow::anyhow;
use ccci_checks::gate::{load_spec, plan, validate_params, GateError, GateRun};
use ccci_checks::BUILTIN_GATES;
use ccci_core::render::{self, Format};
use ccci_core::Progress;
use ccci_host::TargetSpec;
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;
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
    /// human | json | junit | markdown | prometheus
    #[arg(long, default_value = "human")]
    pub format: String,
    /// Write the report to FILE instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Run only this check (repeatable).
    #[arg(long = "check", value_name = "ID")]
    pub checks: Vec<String>,
}

/// A gate error as the CLI's exit code: usage (2) or unreachable (3).
fn cli_error(e: GateError) -> CliError {
    match e {
        GateError::Usage(m) => CliError::Usage(anyhow!(m)),
        GateError::Unreachable(m) => CliError::Unreachable(anyhow!(m)),
    }
}

pub fn list(gate: Option<&str>) -> Result<u8, CliError> {
    match gate {
        Some(g) => {
            let spec = load_spec(g).map_err(cli_error)?;
            let planned = plan(&spec, g, &[]).map_err(cli_error)?;
            validate_params(&spec, g).map_err(cli_error)?;
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
    let spec = load_spec(&args.gate).map_err(cli_error)?;
    let tspec = TargetSpec::parse(&args.target).map_err(|e| CliError::Usage(anyhow!("{e}")))?;
    let mut run = GateRun::prepare(
        spec,
        &args.gate,
        &args.checks,
        &tspec,
        &args.target,
        &args.repo,
        &args.rev,
    )
    .map_err(cli_error)?;
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
    let target = run.bind(crate::target::resolve(&tspec, &args.repo).await?);

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
    // SIGINT/SIGTERM: stop the checks, let what they left be cleaned up, exit 130/143
    let cleanups = run.cleanups();
    let outcome = tokio::select! {
        r = run.run(target, progress) => Ok(r),
        sig = crate::signals::interrupted() => Err(sig),
    };
    let finished = match outcome {
        Ok(r) => r.map_err(cli_error)?,
        Err(sig) => {
            eprintln!(
                "ccci-verify: interrupted ({}); removing what the checks left on the target",
                sig.name
            );
            if !cleanups.wait(std::time::Duration::from_secs(60)).await {
                eprintln!("ccci-verify: the clean-up did not finish; the next gate run sweeps the probe's objects");
            }
            return Ok(sig.exit_code);
        }
    };
    let color = args.output.is_none() && std::io::stdout().is_terminal();
    let text = finished.render(format, color);
    let report = finished.report;
    match &args.output {
        Some(path) => {
            write_replacing(path, &text).map_err(|e| {
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

/// Write `text` to `path` by a rename over it (a temporary file beside it first), so a reader
/// such as node_exporter's textfile collector never sees half a report.
fn write_replacing(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}
