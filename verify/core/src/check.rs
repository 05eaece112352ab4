//! A check, its verdict and its evidence.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The property holds, and the evidence shows it.
    Pass,
    /// The property does not hold; the evidence shows why.
    Fail,
    /// The check could not decide (a command or API call failed, a timeout).
    Error,
    /// The check does not apply here; the detail says why. A skipped blocking check does not
    /// pass the gate.
    Skip,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Error => "error",
            Verdict::Skip => "skip",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One piece of evidence: a command run on the target (argv, joined for display) or an API call
/// made to its Docker daemon, what it returned, and its exit status (`None` for API calls).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub command: String,
    pub exit: Option<i32>,
    pub output: String,
}

impl Evidence {
    pub fn new(command: impl Into<String>, exit: Option<i32>, output: impl Into<String>) -> Self {
        Evidence {
            command: command.into(),
            exit,
            output: output.into(),
        }
    }

    /// Evidence of a Docker API call (no exit status).
    pub fn api(call: impl Into<String>, output: impl Into<String>) -> Self {
        Evidence::new(call, None, output)
    }

    /// A note the check wrote (a comparison, a computed set); `command` names what it is.
    pub fn note(what: impl Into<String>, output: impl Into<String>) -> Self {
        Evidence::new(what, None, output)
    }
}

/// What a check returns: a verdict, one line saying why, and the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub verdict: Verdict,
    pub detail: String,
    pub evidence: Vec<Evidence>,
    /// The check does not apply to this target (a `skip` that is not a failure to test the
    /// claim): the runner reports it `blocking: false`. Every other skip fails the gate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_applicable: bool,
}

impl Outcome {
    pub fn new(verdict: Verdict, detail: impl Into<String>) -> Self {
        Outcome {
            verdict,
            detail: detail.into(),
            evidence: Vec::new(),
            not_applicable: false,
        }
    }
    /// A `skip` because the check does not apply to this target (the detail says why): not
    /// blocking, whatever the spec says.
    pub fn not_applicable(detail: impl Into<String>) -> Self {
        Outcome {
            not_applicable: true,
            ..Self::new(Verdict::Skip, detail)
        }
    }
    pub fn pass(detail: impl Into<String>) -> Self {
        Self::new(Verdict::Pass, detail)
    }
    pub fn fail(detail: impl Into<String>) -> Self {
        Self::new(Verdict::Fail, detail)
    }
    pub fn error(detail: impl Into<String>) -> Self {
        Self::new(Verdict::Error, detail)
    }
    pub fn skip(detail: impl Into<String>) -> Self {
        Self::new(Verdict::Skip, detail)
    }
    /// Pass when `ok`, fail otherwise, with the matching detail.
    pub fn decide(
        ok: bool,
        pass_detail: impl Into<String>,
        fail_detail: impl Into<String>,
    ) -> Self {
        if ok {
            Self::pass(pass_detail)
        } else {
            Self::fail(fail_detail)
        }
    }
    pub fn with_evidence(mut self, evidence: impl IntoIterator<Item = Evidence>) -> Self {
        self.evidence.extend(evidence);
        self
    }
    pub fn push(&mut self, e: Evidence) {
        self.evidence.push(e);
    }
}

/// A check of the catalog. `C` is the context the catalog gives every check (the target, the
/// gate's parameters, the repository).
#[async_trait]
pub trait Check<C: Sync + ?Sized>: Send + Sync {
    /// The stable id, e.g. `units.legacy-timer-absent`.
    fn id(&self) -> &'static str;
    /// One line saying what holds when the check passes.
    fn title(&self) -> &'static str;
    /// Decide. Must not panic; an inability to decide is `Verdict::Error` with the reason.
    async fn run(&self, ctx: &C) -> Outcome;
    /// True when the check compares the host with git at the gate's revision, so a run that
    /// selects it needs a repository and a revision that resolves.
    fn reads_git(&self) -> bool {
        false
    }
}
