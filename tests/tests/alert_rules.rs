//! The alert rules shipped in `nix/alerts/` (issue 21, item 2), checked by Prometheus' own
//! `promtool` (Debian's `prometheus` package, installed by `.ci/deps`): `check rules`, and
//! `test rules` with series that make each alert fire and series that keep it quiet. A rule
//! file with a wrong span fails those tests (they can fail), and every metric a rule reads is
//! one the prune writes.

use std::path::{Path, PathBuf};
use std::process::Command;

use ci_docker_prune::gates::{Gate, GateDecision};
use ci_docker_prune::metrics::{self, MetricsState, RunInfo};
use ci_docker_prune::report::{CacheReport, DiskReport, Outcome, Report};

fn alerts_dir() -> PathBuf {
    ccci_tests::workspace_root().join("nix/alerts")
}

fn promtool(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("promtool (Debian package prometheus, see .ci/deps): {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn promtool_checks_the_rules() {
    let (ok, out) = promtool(
        &["check", "rules", "ci-docker-prune.rules.yml"],
        &alerts_dir(),
    );
    assert!(ok, "{out}");
    assert!(out.contains("SUCCESS: 5 rules found"), "{out}");
}

#[test]
fn promtool_unit_tests_fire_and_stay_quiet() {
    let (ok, out) = promtool(
        &["test", "rules", "ci-docker-prune.rules.test.yml"],
        &alerts_dir(),
    );
    assert!(ok, "{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The unit tests catch a rule that waits too long (three days instead of two), and one
/// that fires on the disk gate as well.
#[test]
fn the_unit_tests_fail_on_a_wrong_rule() {
    let rules = std::fs::read_to_string(alerts_dir().join("ci-docker-prune.rules.yml")).unwrap();
    let tests =
        std::fs::read_to_string(alerts_dir().join("ci-docker-prune.rules.test.yml")).unwrap();
    for (from, to) in [
        (
            "> 2 * 86400\n        for: 10m",
            "> 3 * 86400\n        for: 10m",
        ),
        ("{gate!=\"disk\"}", ""),
        ("{outcome=\"pruned\"} == 1", "{outcome=\"pruned\"} >= 0"),
        (
            "ci_docker_prune_last_run_incidents > 0",
            "ci_docker_prune_last_run_incidents > 1",
        ),
    ] {
        assert!(rules.contains(from), "{from}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ci-docker-prune.rules.yml"),
            rules.replacen(from, to, 1),
        )
        .unwrap();
        std::fs::write(dir.path().join("ci-docker-prune.rules.test.yml"), &tests).unwrap();
        let (ok, out) = promtool(
            &["test", "rules", "ci-docker-prune.rules.test.yml"],
            dir.path(),
        );
        assert!(
            !ok,
            "a rule with {from:?} -> {to:?} passed its tests: {out}"
        );
    }
}

/// Every alert's `runbook` link names a heading of docs/runbook.md (GitHub's anchor: lower
/// case, spaces to dashes).
#[test]
fn every_alert_links_a_runbook_section() {
    let rules = std::fs::read_to_string(alerts_dir().join("ci-docker-prune.rules.yml")).unwrap();
    let runbook =
        std::fs::read_to_string(ccci_tests::workspace_root().join("docs/runbook.md")).unwrap();
    let anchors: Vec<String> = runbook
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                .collect::<String>()
                .replace(' ', "-")
        })
        .collect();
    let links = regex::Regex::new(r#"runbook: "docs/runbook\.md#([a-z0-9-]+)""#).unwrap();
    let alerts = rules.matches("- alert:").count();
    let found: Vec<&str> = links
        .captures_iter(&rules)
        .filter_map(|c| c.get(1).map(|m| m.as_str()))
        .collect();
    assert_eq!(found.len(), alerts, "every alert has a runbook link");
    for a in found {
        assert!(
            anchors.iter().any(|h| h == a),
            "docs/runbook.md has no section #{a}"
        );
    }
}

/// Every `ci_docker_prune_*` name the rules read is a family the prune's textfile has (a
/// report with every part, one gate closed).
#[test]
fn the_rules_read_metrics_the_prune_writes() {
    let rules = std::fs::read_to_string(alerts_dir().join("ci-docker-prune.rules.yml")).unwrap();
    let mut r = Report::new(
        Outcome::Skipped,
        vec![
            GateDecision {
                gate: Gate::Disk,
                pass: true,
                detail: String::new(),
            },
            GateDecision {
                gate: Gate::Runs,
                pass: false,
                detail: String::new(),
            },
        ],
    );
    r.disks = vec![DiskReport {
        path: "/".into(),
        used_bytes: 9,
        avail_bytes: 1,
        percent: 90,
    }];
    r.cache = Some(CacheReport::default());
    r.evict_queue = Some(0);
    let info = RunInfo {
        end: 1,
        duration_secs: 0.0,
        threshold: 80,
        evict_low_watermark: 70,
    };
    let mut state = MetricsState::default();
    state.update(&r, &info);
    let text = metrics::render(&r, &state, &info);
    let names = regex::Regex::new(r"ci_docker_prune_[a-z_]+").unwrap();
    let mut seen = 0;
    for m in names.find_iter(&rules) {
        seen += 1;
        assert!(
            text.contains(&format!("# TYPE {} ", m.as_str())),
            "{} is not written by the prune:\n{text}",
            m.as_str()
        );
    }
    assert!(seen >= 5);
}
