//! `ccci-verify`: proves, with evidence, that a CI host's image cache and prune policy are
//! what git says. See `docs/checks.md`.
//!
//! Exit codes (contract): 0 every blocking check passed; 1 a check failed; 2 usage or spec
//! error; 3 target unreachable.

mod gate;
mod sandbox_cmd;
mod signals;
mod target;
mod units;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// An error with the exit code of the contract it maps to.
#[derive(Debug)]
pub enum CliError {
    /// Bad flags, spec, repo or revision: exit 2.
    Usage(anyhow::Error),
    /// The target cannot be reached: exit 3.
    Unreachable(anyhow::Error),
    /// Anything else that stopped the run: exit 1.
    Runtime(anyhow::Error),
}

impl CliError {
    fn code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Unreachable(_) => 3,
            CliError::Runtime(_) => 1,
        }
    }
    fn error(&self) -> &anyhow::Error {
        match self {
            CliError::Usage(e) | CliError::Unreachable(e) | CliError::Runtime(e) => e,
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "ccci-verify",
    version,
    about = "Verify, with evidence, that a CI host's Docker image cache and prune policy are what git says",
    long_about = "Verify, with evidence, that a CI host's Docker image cache and prune policy are what git says.\n\n\
Every verdict carries its evidence: the command or API call, what it returned, and why that\n\
passes or fails. A reviewer runs `ccci-verify gate 2pc --target ssh://root@HOST` cold to accept\n\
or reject a claim. Without --target the gate runs against the embedded sandbox (a private\n\
dockerd in swarm mode, a registry and a systemd host; see docs/sandbox.md).\n\n\
Exit codes: 0 every blocking check passed, 1 a check failed, 2 usage or spec error,\n\
3 target unreachable."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a gate's checks against a target and print the report.
    Gate(gate::GateArgs),
    /// List the checks of a gate (or of the whole catalog).
    Checks {
        /// A built-in gate name or a path to a spec (.toml); all known checks when omitted.
        gate: Option<String>,
    },
    /// List the systemd units the Nix files of a repository declare at a revision.
    Units {
        /// The git repository.
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// A revision: sha, branch, tag or HEAD.
        #[arg(long, default_value = "HEAD")]
        rev: String,
        /// Print the JSON document of the contract.
        #[arg(long)]
        json: bool,
    },
    /// Manage the embedded sandbox target.
    Sandbox {
        #[command(subcommand)]
        action: sandbox_cmd::Action,
    },
}

fn main() -> ExitCode {
    // die quietly on a closed pipe (`ccci-verify units | head`) like other CLI tools
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ccci-verify: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let res = rt.block_on(async {
        match cli.cmd {
            Cmd::Gate(args) => gate::run(args).await,
            Cmd::Checks { gate } => gate::list(gate.as_deref()),
            Cmd::Units { repo, rev, json } => units::run(&repo, &rev, json),
            Cmd::Sandbox { action } => sandbox_cmd::run(action).await,
        }
    });
    match res {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("ccci-verify: {:#}", e.error());
            ExitCode::from(e.code())
        }
    }
}
