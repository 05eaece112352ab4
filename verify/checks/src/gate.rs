//! A gate run, assembled once for the CLI and the tests: the spec (built in or a file), its
//! checks paired with the catalog, the parameters for the target (every per-target override
//! validated), the revision git is read at; then the run on a reachable target and its report.
//!
//! ```text
//! load_spec(gate) ─► GateRun::prepare(spec, origin, only, target spec, repo, rev)  (exit 2 on error)
//!                 ─► GateRun::run(GateTarget, progress)                          (exit 3 when unreachable)
//!                 ─► Report                                                       (exit 0 or 1)
//! ```
//!
//! The caller resolves the target (the CLI and the tests bring the sandbox up through
//! `ccci-sandbox`) and maps [`GateError`] to an exit code with [`GateError::exit_code`].

use crate::{Ctx, Params, BUILTIN_GATES};
use ccci_core::redact::Redactor;
use ccci_core::render::{self, Format};
use ccci_core::{GateSpec, Planned, Progress, Report, SpecError};
use ccci_host::{Target, TargetSpec};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a gate run could not be prepared or started.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// A bad gate spec, check id, parameter, repository or revision (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The target does not answer a command or its Docker daemon does not answer (exit 3).
    #[error("{0}")]
    Unreachable(String),
}

impl GateError {
    /// The exit code of the `ccci-verify` contract.
    pub fn exit_code(&self) -> u8 {
        match self {
            GateError::Usage(_) => 2,
            GateError::Unreachable(_) => 3,
        }
    }
}

/// A built-in gate by name, or a spec file by path.
pub fn load_spec(gate: &str) -> Result<GateSpec, GateError> {
    if let Some((_, text)) = BUILTIN_GATES.iter().find(|(n, _)| *n == gate) {
        return GateSpec::parse(text, &format!("built-in gate {gate}"))
            .map_err(|e| GateError::Usage(e.to_string()));
    }
    let p = Path::new(gate);
    if gate.ends_with(".toml") || p.exists() {
        return GateSpec::load(p).map_err(|e| GateError::Usage(e.to_string()));
    }
    let names: Vec<&str> = BUILTIN_GATES.iter().map(|(n, _)| *n).collect();
    Err(GateError::Usage(
        SpecError::UnknownGate(gate.to_string(), names.join(", ")).to_string(),
    ))
}

/// Pair every selected spec entry with its catalog check; an id the catalog lacks is a spec
/// error naming `origin` (the gate name or spec path the user gave).
pub fn plan(
    spec: &GateSpec,
    origin: &str,
    only: &[String],
) -> Result<Vec<Planned<Ctx>>, GateError> {
    let selected = spec.select(only).map_err(GateError::Usage)?;
    let mut out = Vec::new();
    for s in selected {
        let check = crate::find(&s.id).ok_or_else(|| {
            GateError::Usage(format!(
                "gate spec {origin} (gate {}): [[checks]] id: unknown check id `{}` (see `ccci-verify checks`)",
                spec.gate, s.id
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
) -> Result<Params, GateError> {
    Params::from_table(&spec.params_for(kind, target)).map_err(|e| {
        let mut scope = String::new();
        for k in [kind, target] {
            if spec.targets.contains_key(k) && !scope.contains(&format!("\"{k}\"")) {
                scope.push_str(&format!("[targets.\"{k}\".params] merged: "));
            }
        }
        GateError::Usage(format!(
            "gate spec {origin} (gate {}): {scope}{e}",
            spec.gate
        ))
    })
}

/// Every per-target override must make valid parameters, not only the one this run uses: a
/// typo in `[targets.ssh.params]` is reported on the sandbox run too.
pub fn validate_params(spec: &GateSpec, origin: &str) -> Result<(), GateError> {
    target_params(spec, origin, "", "")?;
    for key in spec.targets.keys() {
        let kind = match key.as_str() {
            "ssh" | "docker" => key.clone(),
            _ => TargetSpec::parse(key)
                .map(|t| t.kind().to_string())
                .map_err(|_| {
                    GateError::Usage(format!(
                        "gate spec {origin} (gate {}): [targets.\"{key}\"] names no target: expected sandbox, local, ssh, docker or a full target such as ssh://root@host",
                        spec.gate
                    ))
                })?,
        };
        target_params(spec, origin, &kind, key)?;
    }
    Ok(())
}

/// A target as a gate run needs it: the transport and Docker endpoint, and what is known of it
/// from outside (the sandbox knows where its daemon keeps its data).
pub struct GateTarget {
    pub target: Target,
    /// The Docker root the daemon must use; overrides the spec's `[params.store] docker_root`.
    pub docker_root: Option<String>,
}

impl GateTarget {
    /// Put what is known of the target into the run's parameters (the daemon's root). Called
    /// between [`GateRun::prepare`] and [`GateRun::run`], so a caller can still change them.
    pub fn adjust(&self, params: &mut Params) {
        if let Some(root) = &self.docker_root {
            params.store.docker_root = Some(root.clone());
        }
    }
}

impl From<Target> for GateTarget {
    fn from(target: Target) -> GateTarget {
        GateTarget {
            target,
            docker_root: None,
        }
    }
}

/// A gate run, checked and ready: everything that can be wrong without reaching the target has
/// been found by [`GateRun::prepare`].
pub struct GateRun {
    pub spec: GateSpec,
    pub planned: Vec<Planned<Ctx>>,
    /// The parameters for the target; a caller may change them before [`GateRun::run`] (the
    /// wrong-state tests do).
    pub params: Params,
    pub repo: PathBuf,
    /// The full sha of the revision, or `unknown` when no selected check reads git and the
    /// revision does not resolve.
    pub rev: String,
    /// Clean-ups of work the checks left when cancelled; see [`GateRun::cleanups`].
    cleanups: crate::Cleanups,
}

impl GateRun {
    /// Select the checks (`only`, or all), validate every per-target parameter override, take
    /// the parameters for `target` (`target_arg` is the target as the user named it, which may
    /// have an override of its own), and resolve `rev` in `repo` — required only when a
    /// selected check reads git.
    pub fn prepare(
        spec: GateSpec,
        origin: &str,
        only: &[String],
        target: &TargetSpec,
        target_arg: &str,
        repo: &Path,
        rev: &str,
    ) -> Result<GateRun, GateError> {
        let planned = plan(&spec, origin, only)?;
        validate_params(&spec, origin)?;
        let params = target_params(&spec, origin, target.kind(), target_arg)?;
        let reads_git = planned.iter().any(|p| p.check.reads_git());
        let rev = match ccci_nix::GitRepo::open(repo).and_then(|g| g.resolve(rev)) {
            Ok(sha) => sha,
            Err(e) if reads_git => {
                return Err(GateError::Usage(format!(
                    "--repo {} --rev {rev}: {e}",
                    repo.display()
                )))
            }
            Err(_) => "unknown".to_string(),
        };
        Ok(GateRun {
            spec,
            planned,
            params,
            repo: repo.to_path_buf(),
            rev,
            cleanups: crate::Cleanups::default(),
        })
    }

    /// The clean-ups of this run. When the run's future is dropped (the gate interrupted by a
    /// signal), whatever the checks left is cleaned up by tasks registered here: wait for them
    /// with [`crate::Cleanups::wait`] before the process exits.
    pub fn cleanups(&self) -> crate::Cleanups {
        self.cleanups.clone()
    }

    /// Take what is known of `target` into the parameters ([`GateTarget::adjust`]) and
    /// return its transport for [`GateRun::run`].
    pub fn bind(&mut self, target: GateTarget) -> Target {
        target.adjust(&mut self.params);
        target.target
    }

    /// Run every planned check on `target` and report. The target must answer first: a
    /// command and a Docker ping, else [`GateError::Unreachable`]. Before any check runs, the
    /// secrets the target's Docker client config holds are registered, so every check's output
    /// is scrubbed of them, whichever checks run.
    pub async fn run(
        self,
        target: Target,
        progress: Arc<dyn Fn(Progress) + Send + Sync>,
    ) -> Result<Finished, GateError> {
        target
            .ensure_reachable()
            .await
            .map_err(|e| GateError::Unreachable(e.to_string()))?;
        let params = self.params;
        let label = target.label().to_string();
        let redactor = Redactor::new();
        // a file that cannot be read registers nothing; auth.daemon-authenticated says why
        if let Ok(Some(bytes)) = target.read_file(&params.auth.config_path).await {
            crate::auth::register_secrets(&String::from_utf8_lossy(&bytes), &redactor);
        }
        let mut ctx = Ctx::new(
            target,
            params,
            self.repo,
            self.rev.clone(),
            redactor.clone(),
        );
        ctx.cleanups = self.cleanups.clone();
        let started = std::time::Instant::now();
        let results =
            ccci_core::run_checks(self.planned, Arc::new(ctx), redactor.clone(), progress).await;
        // what a cancelled check left (a probe cut off by its timeout) is removed before the
        // report is given
        self.cleanups
            .wait(std::time::Duration::from_secs(
                crate::probe::CLEANUP_SECS + 10,
            ))
            .await;
        Ok(Finished {
            report: Report::new(&self.spec.gate, &label, &self.rev, results),
            redactor,
            duration: started.elapsed(),
        })
    }
}

/// A finished gate run: its report (every string already scrubbed by the runner) and the
/// run's secrets, to scrub the rendered text once more.
pub struct Finished {
    pub report: Report,
    pub redactor: Redactor,
    /// The checks' wall time (they run in parallel).
    pub duration: std::time::Duration,
}

impl Finished {
    /// The report rendered, scrubbed again as a whole: a secret split across fields, or put
    /// together by a renderer, is not printed either.
    pub fn render(&self, format: Format, color: bool) -> String {
        let text = match format {
            Format::Prometheus => render::prometheus(&self.report, Some(self.duration)),
            _ => render::render(&self.report, format, color),
        };
        self.redactor.scrub(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> GateSpec {
        load_spec("2pc").unwrap()
    }

    #[test]
    fn unknown_gate_and_check_are_usage_errors() {
        let e = load_spec("nope").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = plan(&builtin(), "2pc", &["units.nope".into()])
            .err()
            .unwrap_or_else(|| panic!("an unknown id must not plan"));
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn a_revision_is_required_only_when_a_check_reads_git() {
        let nowhere = Path::new("/nonexistent/ccci-repo");
        let only_units = vec!["units.legacy-timer-absent".to_string()];
        let r = GateRun::prepare(
            builtin(),
            "2pc",
            &only_units,
            &TargetSpec::Local,
            "local",
            nowhere,
            "HEAD",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.rev, "unknown");
        let e = GateRun::prepare(
            builtin(),
            "2pc",
            &["repro.files-git-eq-host".to_string()],
            &TargetSpec::Local,
            "local",
            nowhere,
            "HEAD",
        )
        .err()
        .unwrap_or_else(|| panic!("a repro check without a repository must not prepare"));
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string().contains("--repo /nonexistent/ccci-repo"),
            "{e}"
        );
    }

    #[test]
    fn the_git_reading_checks_are_the_repro_family() {
        for c in crate::catalog() {
            assert_eq!(c.reads_git(), c.id().starts_with("repro."), "{}", c.id());
        }
    }
}
