//! Renderers of a [`Report`](crate::Report): human (a table, colour on a TTY), JSON (the
//! contract), JUnit XML (one testcase per check), Markdown (evidence blocks for a status
//! file) and Prometheus metrics (verdicts only, no evidence). All renderers are pure
//! functions of the report.

mod human;
mod junit;
mod markdown;
mod prometheus;

pub use human::{human, progress_line};
pub use junit::junit;
pub use markdown::markdown;
pub use prometheus::prometheus;

use crate::report::Report;

/// Output formats of `ccci-verify gate --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
    Junit,
    Markdown,
    Prometheus,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "human" => Ok(Format::Human),
            "json" => Ok(Format::Json),
            "junit" => Ok(Format::Junit),
            "markdown" | "md" => Ok(Format::Markdown),
            "prometheus" => Ok(Format::Prometheus),
            other => Err(format!(
                "unknown format `{other}` (expected human, json, junit, markdown or prometheus)"
            )),
        }
    }
}

/// The JSON contract, pretty-printed.
pub fn json(report: &Report) -> String {
    // serialising plain data with string keys cannot fail
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// Render in `format`; `color` only affects the human format. Prometheus metrics rendered
/// here carry no gate duration (a report does not know it: [`prometheus`] takes it).
pub fn render(report: &Report, format: Format, color: bool) -> String {
    match format {
        Format::Prometheus => prometheus(report, None),
        Format::Human => human(report, color),
        Format::Json => json(report) + "\n",
        Format::Junit => junit(report),
        Format::Markdown => markdown(report),
    }
}

/// Evidence output longer than this many lines is cut in the middle by human/markdown renderers
/// (JSON and JUnit carry it whole).
pub const MAX_EVIDENCE_LINES: usize = 40;

pub(crate) fn clip(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    if lines.len() <= MAX_EVIDENCE_LINES {
        return output.trim_end().to_string();
    }
    let head = &lines[..MAX_EVIDENCE_LINES / 2];
    let tail = &lines[lines.len() - MAX_EVIDENCE_LINES / 2..];
    format!(
        "{}\n… ({} lines omitted; the JSON report has them all) …\n{}",
        head.join("\n"),
        lines.len() - MAX_EVIDENCE_LINES,
        tail.join("\n")
    )
}

#[cfg(test)]
pub(crate) mod sample {
    use crate::check::{Evidence, Verdict};
    use crate::report::{CheckResult, Report};

    pub fn report() -> Report {
        Report::new(
            "2pc",
            "sandbox",
            "0123456789abcdef0123456789abcdef01234567",
            vec![
                CheckResult {
                    id: "units.legacy-timer-absent".into(),
                    title: "docker-prune.timer is gone".into(),
                    verdict: Verdict::Pass,
                    blocking: true,
                    duration_ms: 12,
                    detail: "LoadState=not-found, no unit file".into(),
                    evidence: vec![Evidence::new(
                        "systemctl show -p Id,LoadState docker-prune.timer",
                        Some(0),
                        "Id=docker-prune.timer\nLoadState=not-found",
                    )],
                },
                CheckResult {
                    id: "cache.warm-redeploy-zero-layers".into(),
                    title: "a warm redeploy pulls zero layers".into(),
                    verdict: Verdict::Fail,
                    blocking: true,
                    duration_ms: 2300,
                    detail: "3 layers pulled <on redeploy> & \"more\"".into(),
                    evidence: vec![Evidence::api(
                        "POST /images/create?fromImage=redis&tag=7-alpine",
                        "a1b2: Pull complete\nc3d4: Pull complete\n```fence```",
                    )],
                },
                CheckResult {
                    id: "auth.daemon-authenticated".into(),
                    title: "credentials".into(),
                    verdict: Verdict::Skip,
                    blocking: false,
                    duration_ms: 1,
                    detail: "no credentials expected on this target".into(),
                    evidence: vec![],
                },
            ],
        )
    }
}
