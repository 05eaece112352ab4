//! Prometheus text format (0.0.4), for a host that runs the gate on a timer and lets its
//! monitoring watch it (node_exporter's textfile collector: `--format prometheus --output
//! /var/lib/prometheus-node-exporter/ccci-verify.prom`; its `node_textfile_mtime_seconds`
//! tells when the gate last ran).
//!
//! One sample per check (its verdict a label, its blocking flag a label, value 1), each
//! check's duration, the summary, and the gate's outcome and duration. Never a detail nor
//! any evidence: what a check saw stays in the JSON report, so no output (and so no secret
//! a check may have read) reaches the metrics.

use std::fmt::Write as _;
use std::time::Duration;

use crate::check::Verdict;
use crate::report::Report;

/// Every metric's name starts with this.
pub const PREFIX: &str = "ccci_verify_";

/// A label value, escaped as the text format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let l: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", l.join(","))
}

/// The report as Prometheus metrics. `duration`: the gate's wall time, when known (the
/// checks run in parallel: it is not the sum of theirs).
pub fn prometheus(report: &Report, duration: Option<Duration>) -> String {
    let mut o = String::new();
    let gate = report.gate.as_str();
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {PREFIX}{name} {help}");
        let _ = writeln!(o, "# TYPE {PREFIX}{name} {kind}");
    };
    family(
        &mut o,
        "gate_passed",
        "gauge",
        "1 when every blocking check of the gate passed (exit 0), else 0.",
    );
    let _ = writeln!(
        o,
        "{PREFIX}gate_passed{} {}",
        labels(&[
            ("gate", gate),
            ("target", &report.target),
            ("rev", &report.rev)
        ]),
        u8::from(report.blocking_passed())
    );
    if let Some(d) = duration {
        family(
            &mut o,
            "gate_duration_seconds",
            "gauge",
            "How long the gate run took.",
        );
        let _ = writeln!(
            o,
            "{PREFIX}gate_duration_seconds{} {:.3}",
            labels(&[("gate", gate)]),
            d.as_secs_f64()
        );
    }
    family(
        &mut o,
        "gate_checks",
        "gauge",
        "Checks of the gate run by verdict.",
    );
    let s = &report.summary;
    for (v, n) in [
        ("pass", s.pass),
        ("fail", s.fail),
        ("error", s.error),
        ("skip", s.skip),
    ] {
        let _ = writeln!(
            o,
            "{PREFIX}gate_checks{} {n}",
            labels(&[("gate", gate), ("verdict", v)])
        );
    }
    family(
        &mut o,
        "check_verdict",
        "gauge",
        "One sample per check: its verdict (pass, fail, error, skip) and whether it blocks the gate as labels, value 1.",
    );
    for c in &report.checks {
        let _ = writeln!(
            o,
            "{PREFIX}check_verdict{} 1",
            labels(&[
                ("gate", gate),
                ("check", &c.id),
                ("verdict", c.verdict.as_str()),
                ("blocking", if c.blocking { "true" } else { "false" }),
            ])
        );
    }
    family(
        &mut o,
        "check_passed",
        "gauge",
        "1 when the check passed, else 0.",
    );
    for c in &report.checks {
        let _ = writeln!(
            o,
            "{PREFIX}check_passed{} {}",
            labels(&[("gate", gate), ("check", &c.id)]),
            u8::from(c.verdict == Verdict::Pass)
        );
    }
    family(
        &mut o,
        "check_duration_seconds",
        "gauge",
        "How long each check took.",
    );
    for c in &report.checks {
        let _ = writeln!(
            o,
            "{PREFIX}check_duration_seconds{} {:.3}",
            labels(&[("gate", gate), ("check", &c.id)]),
            c.duration_ms as f64 / 1000.0
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::sample;

    #[test]
    fn one_sample_per_check_and_no_evidence() {
        let r = sample::report();
        let text = prometheus(&r, Some(Duration::from_millis(2500)));
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        // hand-derived from the sample report: one failing blocking check, so the gate fails
        for want in [
            r#"ccci_verify_gate_passed{gate="2pc",target="sandbox",rev="0123456789abcdef0123456789abcdef01234567"} 0"#,
            r#"ccci_verify_gate_duration_seconds{gate="2pc"} 2.500"#,
            r#"ccci_verify_gate_checks{gate="2pc",verdict="fail"} 1"#,
            r#"ccci_verify_gate_checks{gate="2pc",verdict="pass"} 1"#,
            r#"ccci_verify_check_verdict{gate="2pc",check="units.legacy-timer-absent",verdict="pass",blocking="true"} 1"#,
            r#"ccci_verify_check_verdict{gate="2pc",check="cache.warm-redeploy-zero-layers",verdict="fail",blocking="true"} 1"#,
            r#"ccci_verify_check_verdict{gate="2pc",check="auth.daemon-authenticated",verdict="skip",blocking="false"} 1"#,
            r#"ccci_verify_check_passed{gate="2pc",check="cache.warm-redeploy-zero-layers"} 0"#,
            r#"ccci_verify_check_duration_seconds{gate="2pc",check="cache.warm-redeploy-zero-layers"} 2.300"#,
        ] {
            assert!(samples.contains(&want), "missing {want}:\n{text}");
        }
        assert_eq!(
            samples
                .iter()
                .filter(|l| l.starts_with("ccci_verify_check_verdict"))
                .count(),
            r.checks.len()
        );
        for c in &r.checks {
            assert!(!text.contains(&c.detail), "detail of {} in:\n{text}", c.id);
            for e in &c.evidence {
                for line in e.output.lines() {
                    assert!(!text.contains(line), "evidence of {} in:\n{text}", c.id);
                }
            }
        }
        // without a known duration there is no gate duration sample
        assert!(!prometheus(&r, None).contains("gate_duration_seconds"));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut r = sample::report();
        r.target = "ssh://ci@host \"a\"\\b\nc".into();
        let text = prometheus(&r, None);
        assert!(
            text.contains(r#"target="ssh://ci@host \"a\"\\b\nc""#),
            "{text}"
        );
    }
}
