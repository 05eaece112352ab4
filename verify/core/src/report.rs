//! The report a gate run produces: the JSON contract of DESIGN.md, and the exit code it implies.

use crate::check::{Evidence, Verdict};
use serde::{Deserialize, Serialize};

/// One check's result as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub id: String,
    pub title: String,
    pub verdict: Verdict,
    pub blocking: bool,
    pub duration_ms: u64,
    pub detail: String,
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub pass: usize,
    pub fail: usize,
    pub error: usize,
    pub skip: usize,
}

/// A gate run's report (`version` 1 of the JSON contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    pub gate: String,
    pub target: String,
    pub rev: String,
    pub checks: Vec<CheckResult>,
    pub summary: Summary,
}

impl Report {
    pub fn new(gate: &str, target: &str, rev: &str, checks: Vec<CheckResult>) -> Report {
        let mut summary = Summary::default();
        for c in &checks {
            match c.verdict {
                Verdict::Pass => summary.pass += 1,
                Verdict::Fail => summary.fail += 1,
                Verdict::Error => summary.error += 1,
                Verdict::Skip => summary.skip += 1,
            }
        }
        Report {
            version: 1,
            gate: gate.to_string(),
            target: target.to_string(),
            rev: rev.to_string(),
            checks,
            summary,
        }
    }

    /// True when every blocking check passed (a skipped blocking check did not pass).
    pub fn blocking_passed(&self) -> bool {
        self.checks
            .iter()
            .filter(|c| c.blocking)
            .all(|c| c.verdict == Verdict::Pass)
    }

    /// The process exit code of the contract: 0 every blocking check passed, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.blocking_passed() {
            0
        } else {
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: &str, v: Verdict, blocking: bool) -> CheckResult {
        CheckResult {
            id: id.into(),
            title: String::new(),
            verdict: v,
            blocking,
            duration_ms: 0,
            detail: String::new(),
            evidence: vec![],
        }
    }

    #[test]
    fn summary_and_exit_code() {
        let rep = Report::new(
            "g",
            "t",
            "abc",
            vec![r("a", Verdict::Pass, true), r("b", Verdict::Fail, false)],
        );
        assert_eq!(rep.summary.pass, 1);
        assert_eq!(rep.summary.fail, 1);
        assert_eq!(
            rep.exit_code(),
            0,
            "an advisory failure does not fail the gate"
        );
        for v in [Verdict::Fail, Verdict::Error, Verdict::Skip] {
            let rep = Report::new(
                "g",
                "t",
                "abc",
                vec![r("a", Verdict::Pass, true), r("b", v, true)],
            );
            assert_eq!(rep.exit_code(), 1, "blocking {v} must fail the gate");
        }
    }
}
