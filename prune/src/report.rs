//! The result of a run: the `--json` object of the contract and the summary log lines.

use serde::Serialize;

use crate::gates::{Gate, GateDecision};
use crate::plan::Plan;

/// Contract version of the JSON object.
pub const REPORT_VERSION: u32 = 1;

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// A gate was closed (at the start or before a removal step).
    #[serde(rename = "skipped")]
    Skipped,
    /// Every gate passed and the removal steps ran.
    #[serde(rename = "pruned")]
    Pruned,
    /// Every gate passed; nothing was removed, `removed` lists what would be.
    #[serde(rename = "dry-run")]
    DryRun,
}

/// Ids removed (or, in a dry run, that would be).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Removed {
    pub containers: Vec<String>,
    pub images: Vec<String>,
    pub build_cache: Vec<String>,
}

impl Removed {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.images.is_empty() && self.build_cache.is_empty()
    }

    /// `2 containers, 3 images, 0 build cache records`
    pub fn summary(&self) -> String {
        format!(
            "{} container{}, {} image{}, {} build cache record{}",
            self.containers.len(),
            plural(self.containers.len()),
            self.images.len(),
            plural(self.images.len()),
            self.build_cache.len(),
            plural(self.build_cache.len()),
        )
    }
}

impl From<&Plan> for Removed {
    fn from(p: &Plan) -> Self {
        Removed {
            containers: p.containers.iter().map(|c| c.id.clone()).collect(),
            images: p.images.iter().map(|i| i.id.clone()).collect(),
            build_cache: p.build_cache.iter().map(|b| b.id.clone()).collect(),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The `--json` object: `{"version":1,"outcome":...,"skipped_by":...,"gates":[...],"removed":{...},"reclaimed_bytes":N}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub version: u32,
    pub outcome: Outcome,
    pub skipped_by: Option<Gate>,
    /// The latest evaluation of the gates, in order, up to the first closed one.
    pub gates: Vec<GateDecision>,
    pub removed: Removed,
    pub reclaimed_bytes: u64,
}

impl Report {
    pub fn new(outcome: Outcome, gates: Vec<GateDecision>) -> Self {
        Report {
            version: REPORT_VERSION,
            outcome,
            skipped_by: None,
            gates,
            removed: Removed::default(),
            reclaimed_bytes: 0,
        }
    }

    /// One-object JSON, as printed by `--json`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            // Serializing plain strings and numbers cannot fail; keep a valid object anyway.
            format!("{{\"version\":1,\"error\":\"{e}\"}}")
        })
    }

    /// The final summary line.
    pub fn summary_line(&self) -> String {
        let mb = human_bytes(self.reclaimed_bytes);
        match self.outcome {
            Outcome::Skipped => {
                let gate = self.skipped_by.map(Gate::as_str).unwrap_or("?");
                if self.removed.is_empty() {
                    format!("ci-docker-prune: skipped by gate {gate}, nothing removed")
                } else {
                    format!(
                        "ci-docker-prune: stopped by gate {gate} after removing {}; reclaimed {mb}",
                        self.removed.summary()
                    )
                }
            }
            Outcome::Pruned => format!(
                "ci-docker-prune: pruned {}; reclaimed {mb}",
                self.removed.summary()
            ),
            Outcome::DryRun => format!(
                "ci-docker-prune: dry run, would remove {}; would reclaim {mb}",
                self.removed.summary()
            ),
        }
    }
}

/// `1.5 MB` style (decimal units, as docker prints them).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(g: Gate, pass: bool, detail: &str) -> GateDecision {
        GateDecision {
            gate: g,
            pass,
            detail: detail.into(),
        }
    }

    #[test]
    fn json_shape_skipped_by_disk() {
        let mut r = Report::new(
            Outcome::Skipped,
            vec![gate(Gate::Disk, false, "/ at 31% (< 80%)")],
        );
        r.skipped_by = Some(Gate::Disk);
        insta::assert_snapshot!(r.to_json(), @r#"{"version":1,"outcome":"skipped","skipped_by":"disk","gates":[{"gate":"disk","pass":false,"detail":"/ at 31% (< 80%)"}],"removed":{"containers":[],"images":[],"build_cache":[]},"reclaimed_bytes":0}"#);
        assert_eq!(
            r.summary_line(),
            "ci-docker-prune: skipped by gate disk, nothing removed"
        );
    }

    #[test]
    fn json_shape_pruned_and_dry_run() {
        let gates = vec![
            gate(Gate::Disk, true, "/ at 85% (≥ 80%)"),
            gate(
                Gate::Runs,
                true,
                "no live run stack (0 of 1 services match ^x)",
            ),
            gate(Gate::Converge, true, "all 1 services converged"),
        ];
        let mut r = Report::new(Outcome::Pruned, gates);
        r.removed.containers.push("c1".into());
        r.removed.images.push("sha256:i1".into());
        r.reclaimed_bytes = 1_500_000;
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        insta::assert_json_snapshot!(v, @r#"
        {
          "gates": [
            {
              "detail": "/ at 85% (≥ 80%)",
              "gate": "disk",
              "pass": true
            },
            {
              "detail": "no live run stack (0 of 1 services match ^x)",
              "gate": "runs",
              "pass": true
            },
            {
              "detail": "all 1 services converged",
              "gate": "converge",
              "pass": true
            }
          ],
          "outcome": "pruned",
          "reclaimed_bytes": 1500000,
          "removed": {
            "build_cache": [],
            "containers": [
              "c1"
            ],
            "images": [
              "sha256:i1"
            ]
          },
          "skipped_by": null,
          "version": 1
        }
        "#);
        assert_eq!(
            r.summary_line(),
            "ci-docker-prune: pruned 1 container, 1 image, 0 build cache records; reclaimed 1.5 MB"
        );
        r.outcome = Outcome::DryRun;
        assert!(r.to_json().contains("\"outcome\":\"dry-run\""));
        assert!(r
            .summary_line()
            .starts_with("ci-docker-prune: dry run, would remove"));
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(12_300_000), "12.3 MB");
    }
}
