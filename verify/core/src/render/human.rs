use super::clip;
use crate::check::Verdict;
use crate::report::{CheckResult, Report};
use crate::trail::short;
use std::fmt::Write;

fn paint(s: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

fn verdict_cell(v: Verdict, color: bool) -> String {
    let (text, code) = match v {
        Verdict::Pass => ("PASS ", "32"),
        Verdict::Fail => ("FAIL ", "31;1"),
        Verdict::Error => ("ERROR", "35;1"),
        Verdict::Skip => ("SKIP ", "33"),
    };
    paint(text, code, color)
}

/// One line for a finished check, as printed live while a gate runs.
pub fn progress_line(r: &CheckResult, color: bool) -> String {
    format!(
        "{} {:<40} {:>6} ms  {}",
        verdict_cell(r.verdict, color),
        r.id,
        r.duration_ms,
        r.detail
    )
}

/// A table of verdicts, then the evidence of every check that did not pass, then a summary.
pub fn human(report: &Report, color: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "gate {} on {} at {}",
        report.gate,
        report.target,
        short(&report.rev)
    );
    let _ = writeln!(out);
    let width = report
        .checks
        .iter()
        .map(|c| c.id.len())
        .max()
        .unwrap_or(0)
        .max(8);
    for c in &report.checks {
        let _ = writeln!(
            out,
            "  {} {:<width$}  {:>6} ms  {}{}",
            verdict_cell(c.verdict, color),
            c.id,
            c.duration_ms,
            c.detail,
            if c.blocking { "" } else { " (advisory)" },
        );
    }
    for c in report.checks.iter().filter(|c| c.verdict != Verdict::Pass) {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{} {} — {}",
            verdict_cell(c.verdict, color),
            c.id,
            c.title
        );
        let _ = writeln!(out, "  why: {}", c.detail);
        for e in &c.evidence {
            let exit = e.exit.map(|x| format!(" (exit {x})")).unwrap_or_default();
            let _ = writeln!(out, "  $ {}{}", e.command, exit);
            for line in clip(&e.output).lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    let s = &report.summary;
    let _ = writeln!(out);
    let verdict = if report.blocking_passed() {
        paint("GATE PASSED", "32;1", color)
    } else {
        paint("GATE FAILED", "31;1", color)
    };
    let _ = writeln!(
        out,
        "{verdict}: {} pass, {} fail, {} error, {} skip",
        s.pass, s.fail, s.error, s.skip
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::sample;

    #[test]
    fn human_snapshot() {
        insta::assert_snapshot!(human(&sample::report(), false));
    }

    #[test]
    fn colour_only_when_asked() {
        assert!(!human(&sample::report(), false).contains('\x1b'));
        assert!(human(&sample::report(), true).contains("\x1b[31;1mFAIL"));
    }
}
