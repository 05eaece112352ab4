//! `ci-docker-prune` — the CLI of the contract (see docs/prune-policy.md).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use ci_docker_prune::{actions, config, metrics, Hooks, Report, Settings};
use clap::error::ErrorKind;
use clap::Parser;

const ABOUT: &str = "Gated, surgical Docker prune for swarm CI hosts: keeps the local image cache.";

const LONG_ABOUT: &str = "\
Gated, surgical Docker prune for swarm CI hosts: the local image store is the cache.

Nothing is removed unless every gate passes, in order:
  disk      the highest usage over --path is at or above --threshold;
  runs      no swarm service name matches --run-stack-pattern (no CI run is live);
  converge  no swarm service has work in flight (a task being scheduled, pulled or
            started, an update in progress); settled services never hold it.
Then, and only then, it removes what is older than --until: stopped containers, images with
no tag AND no repo digest (build leftovers; anything pulled from a registry is kept), and
build cache. Never `all`, never volumes; images are deleted one by one without force. The
gates are checked again before each removal step.

Eviction tier (on unless --no-evict): when usage is still at or above --threshold after
that, untagged cached pulls that no service references and no container uses go, least
recently used first, down to --evict-low-watermark; the newest image of a repository
deployed within --evict-keep-recent stays. When each image was last used is kept in
$STATE_DIRECTORY/usage.json (systemd's StateDirectory=; config key state_dir).

Exit: 0 done (pruned, skipped by a gate, or dry run); 1 runtime error (e.g. Docker
unreachable, an item the daemon failed to remove: the run goes on with the next); 2 usage or
config error. With --json, one object on stdout in every case (outcome \"error\" on exit 1 or 2).";

/// `--version`: the package version and the source fingerprint `prune/build.rs` computed over
/// the files this binary was built from (`repro.program-git-eq-host` compares it with git's).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (source ",
    env!("CCCI_PRUNE_SOURCE"),
    ")"
);

#[derive(Debug, Parser)]
#[command(name = "ci-docker-prune", version = VERSION, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    /// Disk usage percent (0-100) at or above which pruning may happen [default: 80]
    #[arg(long, value_name = "PCT")]
    threshold: Option<String>,
    /// Mount point to measure; repeatable, the highest usage counts [default: /]
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
    /// Only remove what is older than this (e.g. 24h, 90m, 2days, 0s) [default: 24h]
    #[arg(long, value_name = "DURATION")]
    until: Option<String>,
    /// Regex of service names of a live CI run stack
    /// [default: ^[a-z0-9]{1,4}-[0-9a-f]{6}_ci_commoninternet_net_]
    #[arg(long, value_name = "REGEX")]
    run_stack_pattern: Option<String>,
    /// Docker endpoint, unix:///path or tcp://host:port [default: $DOCKER_HOST, else unix:///var/run/docker.sock]
    #[arg(long, value_name = "URI")]
    docker_host: Option<String>,
    /// TOML file with the same keys (threshold, paths, until, run_stack_pattern, docker_host,
    /// reclaim_superseded_pulls, evict, evict_low_watermark, evict_keep_recent, evict_min_age,
    /// state_dir, gate_stall_warn_after, metrics_file); flags override it
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Eviction tier: evict down to this usage percent [default: 70]
    #[arg(long, value_name = "PCT")]
    evict_low_watermark: Option<String>,
    /// Eviction tier: keep the newest image of a repository deployed within this window [default: 14d]
    #[arg(long, value_name = "DURATION")]
    evict_keep_recent: Option<String>,
    /// Warn (log and JSON `stalled`) when the disk has been over the threshold while the
    /// runs or converge gate kept the prune from acting for this long [default: 24h]
    #[arg(long, value_name = "DURATION")]
    gate_stall_warn_after: Option<String>,
    /// Turn the eviction tier off: cached pulls are never removed
    #[arg(long)]
    no_evict: bool,
    /// Decide and list what would be removed; remove nothing
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON object on stdout (log lines go to stderr)
    #[arg(long)]
    json: bool,
    /// After every run, write node_exporter textfile metrics to this file (atomically);
    /// counters that survive restarts are kept in the state directory
    #[arg(long, value_name = "FILE")]
    metrics_file: Option<String>,
}

/// Log lines: stdout normally, stderr when stdout carries the JSON object.
struct Log {
    to_stderr: bool,
}

impl Hooks for Log {
    fn log(&mut self, line: &str) {
        // A closed pipe must not abort a prune half-way: ignore write errors of log lines.
        if self.to_stderr {
            let _ = writeln!(std::io::stderr(), "{line}");
        } else {
            let _ = writeln!(std::io::stdout(), "{line}");
        }
    }
}

fn settings(cli: &Cli) -> Result<config::Config, config::ConfigError> {
    let file = match &cli.config {
        Some(p) => Settings::from_file(p)?,
        None => Settings::default(),
    };
    let flags = Settings {
        threshold: cli.threshold.clone().map(config::Threshold::Text),
        paths: (!cli.paths.is_empty()).then(|| cli.paths.clone()),
        until: cli.until.clone(),
        run_stack_pattern: cli.run_stack_pattern.clone(),
        docker_host: cli.docker_host.clone(),
        reclaim_superseded_pulls: None,
        evict: cli.no_evict.then_some(false),
        evict_low_watermark: cli.evict_low_watermark.clone().map(config::Threshold::Text),
        evict_keep_recent: cli.evict_keep_recent.clone(),
        state_dir: None,
        gate_stall_warn_after: cli.gate_stall_warn_after.clone(),
        evict_min_age: None,
        metrics_file: cli.metrics_file.clone(),
    };
    // systemd's StateDirectory= (the first entry, if several): below the file and the flags.
    let env = Settings {
        state_dir: std::env::var("STATE_DIRECTORY")
            .ok()
            .and_then(|s| s.split(':').next().map(str::to_string))
            .filter(|s| !s.is_empty()),
        ..Settings::default()
    };
    let env_host = std::env::var("DOCKER_HOST").ok();
    env.overridden_by(file)
        .overridden_by(flags)
        .validate(env_host.as_deref())
}

/// Print the `--json` object on stdout. A stdout that cannot take it (closed, a pipe nobody
/// reads) is said on stderr and makes the run a runtime error (exit 1) — never a panic: the
/// caller asked for the object and did not get it. Returns the exit code to use.
fn print_json(report: &Report, code: u8) -> u8 {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{}", report.to_json()).and_then(|()| out.flush()) {
        Ok(()) => code,
        Err(e) => {
            say(&format!(
                "ci-docker-prune: error: cannot write the JSON report to stdout: {e}"
            ));
            code.max(1)
        }
    }
}

/// A line on stderr; a stderr that cannot take it is ignored (nowhere left to say it).
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Print the `--json` object of a run that could not start, and the message on stderr.
fn fail(json: bool, message: &str, code: u8) -> ExitCode {
    let code = if json {
        print_json(&Report::failed(message), code)
    } else {
        code
    };
    say(&format!("ci-docker-prune: error: {message}"));
    ExitCode::from(code)
}

fn main() -> ExitCode {
    // Known before parsing, so a usage error still prints its JSON object.
    let json = std::env::args_os().skip(1).any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            let message = e.to_string();
            let first = message
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            let code = if json {
                print_json(&Report::failed(first), 2)
            } else {
                2
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let cfg = match settings(&cli).and_then(|c| c.check_paths_exist().map(|()| c)) {
        Ok(c) => c,
        Err(e) => return fail(cli.json, &e.to_string(), 2),
    };
    let mut log = Log {
        to_stderr: cli.json,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(cli.json, &format!("cannot start the async runtime: {e}"), 1),
    };
    let started = std::time::Instant::now();
    let report = rt.block_on(actions::run(&cfg, cli.dry_run, &mut log));
    // a dry run writes no state (docs/prune-policy.md), the metrics and their counters
    // included: a person's or a reviewer's dry run must not show as the timer's last run
    if let Some(path) = cfg.metrics_file.as_ref().filter(|_| !cli.dry_run) {
        let info = metrics::RunInfo {
            end: unix_now(),
            duration_secs: started.elapsed().as_secs_f64(),
            threshold: cfg.threshold,
            evict_low_watermark: cfg.evict_low_watermark,
        };
        if let Err(e) = metrics::write_after_run(path, cfg.state_dir.as_deref(), &report, &info) {
            log.log(&format!("ci-docker-prune: {e}"));
        }
    }
    let code = if cli.json {
        print_json(&report, report.exit_code())
    } else {
        report.exit_code()
    };
    if let Some(e) = &report.error {
        say(&format!("ci-docker-prune: error: {e}"));
    }
    ExitCode::from(code)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
