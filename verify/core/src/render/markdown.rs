use super::clip;
use crate::report::Report;
use std::fmt::Write;

fn fence_for(text: &str) -> String {
    // a fence longer than any run of backticks inside, so evidence cannot close it
    let mut longest = 0;
    let mut run = 0;
    for ch in text.chars() {
        if ch == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat(longest.max(2) + 1)
}

/// Text outside code: `<`, `>` and `&` as entities, so a renderer neither drops `<on redeploy>`
/// as an HTML tag nor reads `&amp;`-like runs.
fn text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn cell(s: &str) -> String {
    text(s).replace('|', "\\|").replace('\n', " ")
}

/// Markdown for a status file: a summary table, then one section per check with its evidence
/// in fenced blocks a reviewer can paste.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Gate `{}` on `{}` at `{}`\n",
        report.gate, report.target, report.rev
    );
    let s = &report.summary;
    let _ = writeln!(
        out,
        "**{}** — {} pass, {} fail, {} error, {} skip\n",
        if report.blocking_passed() {
            "PASSED"
        } else {
            "FAILED"
        },
        s.pass,
        s.fail,
        s.error,
        s.skip
    );
    let _ = writeln!(out, "| check | verdict | blocking | ms | detail |");
    let _ = writeln!(out, "|---|---|---|---:|---|");
    for c in &report.checks {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            c.id,
            c.verdict.as_str().to_uppercase(),
            if c.blocking { "yes" } else { "no" },
            c.duration_ms,
            cell(&c.detail)
        );
    }
    for c in &report.checks {
        let _ = writeln!(
            out,
            "\n### `{}` — {}\n",
            c.id,
            c.verdict.as_str().to_uppercase()
        );
        let _ = writeln!(out, "{}\n\n{}", text(&c.title), text(&c.detail));
        for e in &c.evidence {
            let body = format!(
                "$ {}{}\n{}",
                e.command,
                e.exit.map(|x| format!("   # exit {x}")).unwrap_or_default(),
                clip(&e.output)
            );
            let fence = fence_for(&body);
            let _ = writeln!(out, "\n{fence}console\n{body}\n{fence}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::sample;

    #[test]
    fn text_outside_code_is_not_taken_for_html() {
        let md = markdown(&sample::report());
        assert!(
            md.contains("3 layers pulled &lt;on redeploy&gt; &amp; \"more\""),
            "{md}"
        );
        assert!(!md.contains("pulled <on redeploy>"), "{md}");
    }

    #[test]
    fn markdown_snapshot() {
        insta::assert_snapshot!(markdown(&sample::report()));
    }

    #[test]
    fn evidence_cannot_close_its_fence() {
        assert_eq!(fence_for("a ``` b"), "````");
        assert_eq!(fence_for("plain"), "```");
    }

    #[test]
    fn json_is_the_contract_shape() {
        let v: serde_json::Value =
            serde_json::from_str(&crate::render::json(&sample::report())).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["checks"][1]["verdict"], "fail");
        assert_eq!(v["checks"][0]["evidence"][0]["exit"], 0);
        assert!(v["checks"][1]["evidence"][0]["exit"].is_null());
        assert_eq!(v["summary"]["skip"], 1);
        insta::assert_json_snapshot!(v);
    }
}
