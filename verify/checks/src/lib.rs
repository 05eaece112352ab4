//! The check catalog of `ccci-verify`: one module per family. A reader finds where a verdict is
//! decided by its id: `units.*` in [`units`], `prune.*` in [`prune`], `cache.*` in [`cache`],
//! `auth.*` in [`auth`], `store.*` in [`store`], `repro.*` in [`repro`].
//!
//! Shared leaves, which decide nothing: [`probe`] (the CI cycle that `cache.*` and
//! `prune.keeps-deployed-images` read: it only records facts), [`deployed`] (the deployed
//! prune: its argv, running it, its JSON report) and [`never_all`] (the one definition of
//! "never `--all`, never volumes"). A gate run is assembled in [`gate`].

pub mod auth;
pub mod cache;
pub mod client_config;
pub mod deployed;
pub mod gate;
pub mod never_all;
pub mod params;
pub mod probe;
pub mod prune;
pub mod repro;
pub mod store;
pub mod unit_env;
pub mod units;

use ccci_core::redact::Redactor;
use ccci_core::{Check, Evidence, Halt, Trail};
use ccci_host::{CmdOutput, Target, UnitState};
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
    /// Set when a probe starts: a probe that was cancelled (its check timed out) is not
    /// started again by the next check that reads it.
    pub probe_started: std::sync::atomic::AtomicBool,
    /// Clean-ups still running for work a check left when it was cancelled; the gate run waits
    /// for them before it returns.
    pub cleanups: Cleanups,
}

/// Clean-ups spawned when a check's work is dropped before it could clean up after itself (a
/// timeout, a panic, the gate interrupted). Cheap to clone.
#[derive(Clone, Default)]
pub struct Cleanups(Arc<CleanupsInner>);

#[derive(Default)]
struct CleanupsInner {
    handles: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Work in flight that would spawn a clean-up if dropped (a probe's guard).
    live: std::sync::atomic::AtomicUsize,
}

impl Cleanups {
    /// Work that may need a clean-up starts; pair with [`Cleanups::leave`].
    pub fn enter(&self) {
        self.0
            .live
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// That work ended (cleaned up itself, or spawned its clean-up).
    pub fn leave(&self) {
        self.0
            .live
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Run `f` on the current runtime and remember it. Outside a runtime it cannot run: the
    /// next gate run sweeps what is left.
    pub fn spawn(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let h = rt.spawn(f);
            if let Ok(mut v) = self.0.handles.lock() {
                v.push(h);
            }
        }
    }

    /// Wait, at most `limit`, until no work is in flight (aborted tasks are dropped a moment
    /// after their abort) and every clean-up spawned has finished; true when all did.
    pub async fn wait(&self, limit: std::time::Duration) -> bool {
        tokio::time::timeout(limit, async {
            loop {
                let handles: Vec<_> = match self.0.handles.lock() {
                    Ok(mut v) => v.drain(..).collect(),
                    Err(_) => return,
                };
                let idle = handles.is_empty();
                for h in handles {
                    let _ = h.await;
                }
                if idle && self.0.live.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
        .await
        .is_ok()
    }
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
            probe_started: std::sync::atomic::AtomicBool::new(false),
            cleanups: Cleanups::default(),
        }
    }

    /// Run argv on the target and record it in the trail, whatever it exits with. A transport
    /// failure is recorded too (no exit status, the reason as output) and ends the check as
    /// an error.
    pub async fn cmd(&self, t: &mut Trail, argv: &[&str]) -> Result<CmdOutput, Halt> {
        let cmd = shell_words::join(argv);
        match self.target.run(argv).await {
            Ok(out) => {
                t.push(Evidence::new(cmd, Some(out.status), out.combined()));
                Ok(out)
            }
            Err(e) => {
                t.push(Evidence::new(
                    cmd.clone(),
                    None,
                    format!("could not run: {e}"),
                ));
                Err(Halt::error(format!(
                    "cannot run `{cmd}` on the target: {e}"
                )))
            }
        }
    }

    /// [`Ctx::cmd`] for argv given as owned strings.
    pub async fn cmd_owned(&self, t: &mut Trail, argv: &[String]) -> Result<CmdOutput, Halt> {
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.cmd(t, &refs).await
    }

    /// The target's Docker client, API version negotiated; an error ends the check.
    pub async fn docker(&self) -> Result<bollard::Docker, Halt> {
        self.target
            .docker()
            .await
            .map_err(|e| Halt::error(e.to_string()))
    }

    /// `systemctl show` of one unit, parsed, recorded in the trail. A command that cannot run
    /// or exits non-zero ends the check as an error carrying the command, its exit and what it
    /// printed (a verdict without evidence is not accepted).
    pub async fn unit_state(&self, t: &mut Trail, unit: &str) -> Result<UnitState, Halt> {
        let argv = ccci_host::target::show_argv(&[unit]);
        let out = self
            .cmd_owned(t, &argv)
            .await
            .map_err(|h| Halt::error(format!("cannot read the state of {unit}: {}", h.detail)))?;
        if !out.ok() {
            let why = out.combined();
            return Err(Halt::error(format!(
                "cannot read the state of {unit}: `systemctl show` exited {}: {}",
                out.status,
                why.lines().next().unwrap_or("").trim()
            )));
        }
        let mut states = ccci_host::parse_show(&out.stdout_str(), &[unit])
            .map_err(|e| Halt::error(format!("cannot read the state of {unit}: {e}")))?;
        states
            .pop()
            .ok_or_else(|| Halt::error(format!("no state for {unit}")))
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
