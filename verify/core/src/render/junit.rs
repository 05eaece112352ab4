use crate::check::Verdict;
use crate::report::Report;
use quick_junit::{NonSuccessKind, Report as JReport, TestCase, TestCaseStatus, TestSuite};
use std::time::Duration;

/// JUnit XML: one testsuite for the gate, one testcase per check; fail → failure, error →
/// error, skip → skipped; evidence goes into system-out.
pub fn junit(report: &Report) -> String {
    let mut jr = JReport::new(format!("ccci-verify gate {}", report.gate));
    let mut suite = TestSuite::new(format!("{} on {}", report.gate, report.target));
    for c in &report.checks {
        let status = match c.verdict {
            Verdict::Pass => TestCaseStatus::success(),
            Verdict::Fail => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(c.detail.clone());
                s
            }
            Verdict::Error => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                s.set_message(c.detail.clone());
                s
            }
            Verdict::Skip => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(c.detail.clone());
                s
            }
        };
        let mut tc = TestCase::new(c.id.clone(), status);
        tc.set_classname(format!(
            "{}.{}",
            report.gate,
            c.id.split('.').next().unwrap_or("")
        ));
        tc.set_time(Duration::from_millis(c.duration_ms));
        let mut out = format!("{}\n", c.detail);
        for e in &c.evidence {
            let exit = e.exit.map(|x| format!(" (exit {x})")).unwrap_or_default();
            out.push_str(&format!(
                "$ {}{}\n{}\n",
                e.command,
                exit,
                e.output.trim_end()
            ));
        }
        tc.set_system_out(out);
        suite.add_test_case(tc);
    }
    jr.add_test_suite(suite);
    jr.to_string()
        .unwrap_or_else(|e| format!("<!-- cannot render JUnit: {e} -->\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::sample;

    #[test]
    fn junit_snapshot() {
        insta::assert_snapshot!(junit(&sample::report()));
    }
}
