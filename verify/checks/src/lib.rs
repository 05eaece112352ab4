//! The check catalog of `ccci-verify`: one module per family. A reader finds where a verdict is
//! decided by its id: `units.*` in [`units`], `prune.*` in [`prune`], `cache.*` in [`cache`],
//! `auth.*` in [`auth`], `store.*` in [`store`], `repro.*` in [`repro`]. The probe service that
//! `cache.*` and `prune.keeps-deployed-images` share lives in [`probe`].

pub mod auth;
pub mod cache;
pub mod params;
pub mod probe;
pub mod prune;
pub mod repro;
pub mod store;
pub mod units;

use ccci_core::redact::Redactor;
use ccci_core::{Check, Evidence};
use ccci_host::{CmdOutput, Target};
pub use params::Params;
use std::path::PathBuf;
use std::sync::Arc;

/// What every check is given.
pub struct Ctx {
    pub target: Target,
    pub params: Params,
    /// The repository the gate compares the host with, and the revision (a full sha).
    pub repo: PathBuf,
    pub rev: String,
    /// Secrets met during the run; the runner scrubs them from every output.
    pub redactor: Redactor,
    /// The probe deploy, run once and shared by the checks that read it.
    pub probe: tokio::sync::OnceCell<probe::ProbeRun>,
}

impl Ctx {
    pub fn new(
        target: Target,
        params: Params,
        repo: PathBuf,
        rev: String,
        redactor: Redactor,
    ) -> Ctx {
        Ctx {
            target,
            params,
            repo,
            rev,
            redactor,
            probe: tokio::sync::OnceCell::new(),
        }
    }

    /// Run argv on the target and return it as evidence too. A transport failure becomes
    /// evidence with no exit status and the reason as output.
    pub async fn run(&self, argv: &[&str]) -> (Option<CmdOutput>, Evidence) {
        let cmd = shell_words::join(argv);
        match self.target.run(argv).await {
            Ok(out) => {
                let ev = Evidence::new(cmd, Some(out.status), out.combined());
                (Some(out), ev)
            }
            Err(e) => (
                None,
                Evidence::new(cmd, None, format!("could not run: {e}")),
            ),
        }
    }
}

/// A check in the catalog.
pub type DynCheck = Arc<dyn Check<Ctx>>;

/// Every check this build knows, in catalog order.
pub fn catalog() -> Vec<DynCheck> {
    let mut v: Vec<DynCheck> = Vec::new();
    v.extend(units::checks());
    v.extend(prune::checks());
    v.extend(cache::checks());
    v.extend(auth::checks());
    v.extend(store::checks());
    v.extend(repro::checks());
    v
}

/// The catalog entry of an id.
pub fn find(id: &str) -> Option<DynCheck> {
    catalog().into_iter().find(|c| c.id() == id)
}

/// The gate specs built into the binary: (name, TOML text).
pub const BUILTIN_GATES: &[(&str, &str)] = &[("2pc", include_str!("../../gates/2pc.toml"))];
