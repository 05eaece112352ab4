//! The result of a run: the `--json` object of the contract, and every log line the run
//! writes (gate decisions, what a dry run would remove, what each removal did, the summary).
//! The wording lives here and nowhere else: journald users and tests grep these lines.

use serde::Serialize;

use crate::gates::{Gate, GateDecision};
use crate::plan::{ImageReason, Plan};
use crate::steps::{Done, Item, Step};

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
    /// The list a step's removals go into.
    pub fn of_step(&mut self, step: Step) -> &mut Vec<String> {
        match step {
            Step::Containers => &mut self.containers,
            Step::Images => &mut self.images,
            Step::BuildCache => &mut self.build_cache,
        }
    }

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

/// The line for one gate decision.
pub fn gate_line(d: &GateDecision) -> String {
    let tail = match (d.gate, d.pass) {
        (Gate::Disk, false) => " — keeping local image cache, nothing to do",
        (Gate::Disk, true) => " — disk under pressure",
        (Gate::Runs, false) => " — never prune during a CI run, nothing to do",
        (Gate::Converge, false) => " — a deploy may be pulling, nothing to do",
        (Gate::Runs | Gate::Converge, true) => "",
    };
    format!("ci-docker-prune: {}{}", d.detail, tail)
}

/// The dry run's lines for one item (the build cache prune: one per record it would remove).
pub fn would_remove_lines(item: &Item) -> Vec<String> {
    match item {
        Item::Container(c) => vec![format!(
            "ci-docker-prune: would remove stopped container {} ({}, {})",
            short(&c.id),
            c.name,
            c.state
        )],
        Item::Image(i) => vec![format!(
            "ci-docker-prune: would remove image {} ({}, {})",
            short(&i.id),
            reason_text(&i.reason),
            human_bytes(i.size.max(0) as u64)
        )],
        Item::BuildCache { predicted, .. } => predicted
            .iter()
            .map(|b| {
                format!(
                    "ci-docker-prune: would remove build cache {} ({}, {})",
                    b.id,
                    b.kind,
                    human_bytes(b.size.max(0) as u64)
                )
            })
            .collect(),
    }
}

/// The line for what removing one item did; none for an image that already went with a child.
pub fn done_line(item: &Item, done: &Done) -> Option<String> {
    let line = match (item, done) {
        (_, Done::WentWithChild { .. }) => return None,
        (Item::Container(c), Done::Removed { .. }) => format!(
            "ci-docker-prune: removed stopped container {} ({}, {})",
            short(&c.id),
            c.name,
            c.state
        ),
        (Item::Container(c), Done::Kept(msg)) => format!(
            "ci-docker-prune: kept container {} ({}): {msg}",
            short(&c.id),
            c.name
        ),
        (Item::Container(c), Done::Gone) => {
            format!("ci-docker-prune: container {} already gone", short(&c.id))
        }
        (Item::Image(i), Done::Removed { parents, .. }) => format!(
            "ci-docker-prune: removed image {} ({}, {}){}",
            short(&i.id),
            reason_text(&i.reason),
            human_bytes(i.size.max(0) as u64),
            if parents.is_empty() {
                String::new()
            } else {
                format!(" with {} untagged parent layer(s)", parents.len())
            }
        ),
        (Item::Image(i), Done::Kept(msg)) => format!(
            "ci-docker-prune: kept image {}: in use now ({msg})",
            short(&i.id)
        ),
        (Item::Image(i), Done::Gone) => {
            format!("ci-docker-prune: image {} already gone", short(&i.id))
        }
        (Item::BuildCache { until, .. }, Done::Removed { ids, bytes, .. }) => format!(
            "ci-docker-prune: removed {} build cache record(s) older than {} ({})",
            ids.len(),
            humantime::format_duration(*until),
            human_bytes(*bytes)
        ),
        // The build cache prune is one request that removes what it removes: it neither
        // conflicts nor finds its target gone.
        (Item::BuildCache { .. }, Done::Kept(_) | Done::Gone) => return None,
    };
    Some(line)
}

/// An id as the log shows it: 12 hex digits, no `sha256:`.
pub fn short(id: &str) -> String {
    id.strip_prefix("sha256:")
        .unwrap_or(id)
        .chars()
        .take(12)
        .collect()
}

fn reason_text(r: &ImageReason) -> String {
    match r {
        ImageReason::BuildLeftover => "untagged build leftover, no repo digest".into(),
        ImageReason::SupersededPull { repo } => {
            format!("superseded cached pull of {repo}, opt-in")
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
    fn item_lines_keep_their_wording() {
        use crate::plan::{BuildCacheCandidate, ContainerCandidate, ImageCandidate};
        use std::time::Duration;
        let c = ContainerCandidate {
            id: "3f2a9c1b7d4e0123".into(),
            name: "old-job".into(),
            state: "exited".into(),
            created: 0,
        };
        let i = ImageCandidate {
            id: "sha256:6ad63ac098b1ffff".into(),
            size: 12_300_000,
            created: 0,
            reason: ImageReason::BuildLeftover,
        };
        let pull = ImageCandidate {
            reason: ImageReason::SupersededPull {
                repo: "redis".into(),
            },
            ..i.clone()
        };
        let b = [BuildCacheCandidate {
            id: "rec1".into(),
            kind: "regular".into(),
            size: 10_300,
        }];
        let (c, i, pull) = (Item::Container(&c), Item::Image(&i), Item::Image(&pull));
        let bc = Item::BuildCache {
            until: Duration::from_secs(86_400),
            predicted: &b,
        };
        assert_eq!(
            would_remove_lines(&c),
            ["ci-docker-prune: would remove stopped container 3f2a9c1b7d4e (old-job, exited)"]
        );
        assert_eq!(
            would_remove_lines(&i),
            ["ci-docker-prune: would remove image 6ad63ac098b1 (untagged build leftover, no repo digest, 12.3 MB)"]
        );
        assert_eq!(
            would_remove_lines(&pull),
            ["ci-docker-prune: would remove image 6ad63ac098b1 (superseded cached pull of redis, opt-in, 12.3 MB)"]
        );
        assert_eq!(
            would_remove_lines(&bc),
            ["ci-docker-prune: would remove build cache rec1 (regular, 10.3 kB)"]
        );
        let removed = |parents: &[&str]| Done::Removed {
            ids: vec!["x".into()],
            bytes: 10_300,
            parents: parents.iter().map(|p| p.to_string()).collect(),
        };
        let kept = Done::Kept("conflict: image is being used".into());
        let line = |item: &Item, done: &Done| done_line(item, done).unwrap_or_default();
        assert_eq!(
            line(&c, &removed(&[])),
            "ci-docker-prune: removed stopped container 3f2a9c1b7d4e (old-job, exited)"
        );
        assert_eq!(
            line(&c, &kept),
            "ci-docker-prune: kept container 3f2a9c1b7d4e (old-job): conflict: image is being used"
        );
        assert_eq!(
            line(&c, &Done::Gone),
            "ci-docker-prune: container 3f2a9c1b7d4e already gone"
        );
        assert_eq!(
            line(&i, &removed(&[])),
            "ci-docker-prune: removed image 6ad63ac098b1 (untagged build leftover, no repo digest, 12.3 MB)"
        );
        assert_eq!(
            line(&i, &removed(&["sha256:p1", "sha256:p2"])),
            "ci-docker-prune: removed image 6ad63ac098b1 (untagged build leftover, no repo digest, 12.3 MB) with 2 untagged parent layer(s)"
        );
        assert_eq!(
            line(&i, &kept),
            "ci-docker-prune: kept image 6ad63ac098b1: in use now (conflict: image is being used)"
        );
        assert_eq!(
            line(&i, &Done::Gone),
            "ci-docker-prune: image 6ad63ac098b1 already gone"
        );
        let went = Done::WentWithChild {
            id: "x".into(),
            bytes: 1,
        };
        assert_eq!(done_line(&i, &went), None);
        let pruned = Done::Removed {
            ids: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            bytes: 10_300,
            parents: Vec::new(),
        };
        assert_eq!(
            line(&bc, &pruned),
            "ci-docker-prune: removed 4 build cache record(s) older than 1day (10.3 kB)"
        );
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(12_300_000), "12.3 MB");
    }
}
