//! One evidence trail per check. A check records each command or API call as it runs
//! ([`Trail::push`]) and ends early with `?` on a [`Halt`]; [`Trail::conclude`] attaches everything
//! recorded to the outcome on every path, so no early return can drop its evidence.
//!
//! ```
//! use ccci_core::{Evidence, Halt, Outcome, Trail, Verdict};
//! fn decide(t: &mut Trail, exit: i32) -> Result<Outcome, Halt> {
//!     t.push(Evidence::new("stat -c %a /f", Some(exit), "600"));
//!     if exit != 0 {
//!         return Err(Halt::error("cannot stat /f"));
//!     }
//!     Ok(Outcome::pass("mode 600"))
//! }
//! let mut t = Trail::new();
//! let r = decide(&mut t, 1);
//! let o = t.conclude(r);
//! assert_eq!(o.verdict, Verdict::Error);
//! assert_eq!(o.evidence.len(), 1);
//! ```

use crate::check::{Evidence, Outcome, Verdict};

/// The evidence a check has recorded so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trail {
    evidence: Vec<Evidence>,
}

impl Trail {
    pub fn new() -> Trail {
        Trail::default()
    }

    /// Record one piece of evidence.
    pub fn push(&mut self, e: Evidence) {
        self.evidence.push(e);
    }

    /// Record evidence of a Docker API call.
    pub fn api(&mut self, call: impl Into<String>, output: impl Into<String>) {
        self.push(Evidence::api(call, output));
    }

    /// Record a note (a comparison, a computed set).
    pub fn note(&mut self, what: impl Into<String>, output: impl Into<String>) {
        self.push(Evidence::note(what, output));
    }

    /// Everything recorded, in order.
    pub fn evidence(&self) -> &[Evidence] {
        &self.evidence
    }

    /// Take the recorded evidence out (the trail is empty afterwards).
    pub fn take(&mut self) -> Vec<Evidence> {
        std::mem::take(&mut self.evidence)
    }

    /// The check's outcome with everything recorded before its own evidence, whichever way it
    /// ended.
    pub fn conclude(self, result: Result<Outcome, Halt>) -> Outcome {
        let mut o = match result {
            Ok(o) => o,
            Err(h) => h.into_outcome(),
        };
        let mut evidence = self.evidence;
        evidence.append(&mut o.evidence);
        o.evidence = evidence;
        o
    }
}

/// A check ended before its decision: its verdict and the reason. The trail supplies the
/// evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Halt {
    pub verdict: Verdict,
    pub detail: String,
}

impl Halt {
    /// The check cannot decide (a command or call failed).
    pub fn error(detail: impl Into<String>) -> Halt {
        Halt {
            verdict: Verdict::Error,
            detail: detail.into(),
        }
    }
    /// What the check found already decides it: the property does not hold.
    pub fn fail(detail: impl Into<String>) -> Halt {
        Halt {
            verdict: Verdict::Fail,
            detail: detail.into(),
        }
    }
    /// The check does not apply, or cannot be shown here.
    pub fn skip(detail: impl Into<String>) -> Halt {
        Halt {
            verdict: Verdict::Skip,
            detail: detail.into(),
        }
    }
    pub fn into_outcome(self) -> Outcome {
        Outcome::new(self.verdict, self.detail)
    }
}

impl From<Outcome> for Halt {
    /// An outcome used as an early end; its own evidence is dropped, so only use this for
    /// outcomes without evidence (decision functions).
    fn from(o: Outcome) -> Halt {
        Halt {
            verdict: o.verdict,
            detail: o.detail,
        }
    }
}

/// What a check body returns: its outcome, or an early end.
pub type Decided = Result<Outcome, Halt>;

/// An id or revision shortened for display: without a `sha256:` prefix, its first 12
/// characters.
pub fn short(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_survives_every_ending() {
        for end in [
            Ok(Outcome::pass("ok").with_evidence([Evidence::note("own", "x")])),
            Err(Halt::error("e")),
            Err(Halt::fail("f")),
            Err(Halt::skip("s")),
        ] {
            let mut t = Trail::new();
            t.api("GET /info", "a");
            t.note("cmp", "b");
            let o = t.conclude(end);
            assert!(o.evidence.len() >= 2, "{o:?}");
            assert_eq!(o.evidence[0].command, "GET /info");
            assert_eq!(o.evidence[1].command, "cmp");
        }
    }

    #[test]
    fn short_ids() {
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
        assert_eq!(short("0123456789abcdef0123"), "0123456789ab");
    }
}
