//! Unit names in the `systemctl` commands of docs and status files.
//!
//! Markdown is parsed with `pulldown-cmark` (CommonMark: fenced and indented code blocks,
//! inline code spans, also inside lists and block quotes); only code counts, never prose.
//! Other text files (`.txt`, status files) are read line by line, every line as code.
//! In each piece of code every `systemctl` command is split into words (up to `;`, `&&`,
//! `||`, `|`, a closing quote or paren, or a `#` comment); options and their values are
//! skipped, the first word is the verb and the remaining words of a unit-taking verb are
//! unit names. A name without a unit suffix gets `.service`, as systemctl does; glob
//! patterns and placeholders (`<unit>`, `$UNIT`, `{…}`) are not names.

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};
use serde::Serialize;

/// One unit named by one `systemctl` command in a doc.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct DocRef {
    pub file: String,
    /// 1-based line of the command.
    pub line: u32,
    /// The unit name (with its suffix).
    pub unit: String,
    /// The command as written (from `systemctl` to the end of the command).
    pub command: String,
    /// The verb, e.g. `is-active`.
    pub verb: String,
    /// The command checks that the unit is absent (see [`is_absence_check`]).
    pub absence: bool,
}

const UNIT_SUFFIXES: &[&str] = &[
    "service",
    "socket",
    "timer",
    "path",
    "mount",
    "automount",
    "swap",
    "target",
    "slice",
    "scope",
    "device",
];

/// Verbs whose non-option arguments are unit names (or patterns of them).
const UNIT_VERBS: &[&str] = &[
    "start",
    "stop",
    "reload",
    "restart",
    "try-restart",
    "reload-or-restart",
    "try-reload-or-restart",
    "isolate",
    "kill",
    "clean",
    "freeze",
    "thaw",
    "is-active",
    "is-failed",
    "status",
    "show",
    "cat",
    "help",
    "list-dependencies",
    "enable",
    "disable",
    "reenable",
    "preset",
    "is-enabled",
    "mask",
    "unmask",
    "revert",
    "edit",
    "set-property",
    "reset-failed",
    "list-units",
    "list-timers",
    "list-sockets",
    "list-paths",
    "list-unit-files",
    "link",
];

/// Options of systemctl that take their value as the next word.
const OPTS_WITH_VALUE: &[&str] = &[
    "-p",
    "--property",
    "-t",
    "--type",
    "--state",
    "-H",
    "--host",
    "-M",
    "--machine",
    "-n",
    "--lines",
    "-o",
    "--output",
    "-s",
    "--signal",
    "--kill-whom",
    "--kill-value",
    "--root",
    "--image",
    "--job-mode",
    "--what",
    "--timestamp",
    "--when",
    "--boot-loader-entry",
    "--boot-loader-menu",
    "--reboot-argument",
    "--message",
    "--preset-mode",
    "--drop-in",
    "--check-inhibitors",
];

/// Words on a command's line that make it a check for absence: systemd's own words for a
/// unit it does not know (`LoadState` / `not-found` / "could not be found"), or a negated
/// command (`! systemctl …`). `is-active` printing `inactive` is *not* one: a stopped unit
/// that exists prints it too.
pub fn is_absence_check(line: &str, command_start: usize) -> bool {
    let before = line.get(..command_start).unwrap_or("").trim_end();
    let negated = before.ends_with('!');
    let lower = line.to_ascii_lowercase();
    negated
        || lower.contains("loadstate")
        || lower.contains("not-found")
        || lower.contains("could not be found")
        || lower.contains("no files found")
}

fn is_markdown(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    p.ends_with(".md") || p.ends_with(".markdown")
}

/// Files under a docs directory that are read: markdown and plain text.
pub fn is_doc_file(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    is_markdown(&p) || p.ends_with(".txt") || p.ends_with(".rst") || p.ends_with(".adoc")
}

struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines { text, starts }
    }
    /// 0-based index of the line holding byte `offset`.
    fn index(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        }
    }
    fn line(&self, idx: usize) -> &'a str {
        let start = self.starts.get(idx).copied().unwrap_or(self.text.len());
        let end = self
            .starts
            .get(idx + 1)
            .map(|e| e.saturating_sub(1))
            .unwrap_or(self.text.len());
        self.text.get(start..end.max(start)).unwrap_or("")
    }
}

/// Every unit named by a `systemctl` command in the code of one doc file.
pub fn scan(file: &str, text: &str) -> Vec<DocRef> {
    let lines = Lines::new(text);
    let mut refs = Vec::new();
    if !is_markdown(file) {
        for (i, line) in text.lines().enumerate() {
            commands_in(file, i, line, line, &mut refs);
        }
        return refs;
    }
    let mut in_block: Option<std::ops::Range<usize>> = None;
    for (event, range) in Parser::new_ext(text, Options::empty()).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(kind)) => {
                in_block = Some(range.clone());
                // The source lines of the block, fences excluded.
                let first = lines.index(range.start);
                let last = lines.index(range.end.saturating_sub(1).max(range.start));
                let (from, to) = match kind {
                    CodeBlockKind::Fenced(_) => (first + 1, last),
                    CodeBlockKind::Indented => (first, last + 1),
                };
                for idx in from..to.max(from) {
                    let l = lines.line(idx);
                    commands_in(file, idx, l, l, &mut refs);
                }
            }
            Event::End(TagEnd::CodeBlock) => in_block = None,
            Event::Code(code) if in_block.is_none() => {
                let idx = lines.index(range.start);
                commands_in(file, idx, &code, lines.line(idx), &mut refs);
            }
            _ => {}
        }
    }
    refs.sort();
    refs.dedup();
    refs
}

/// Find the `systemctl` commands in `code` (from line `idx` of `file`); `context` is the
/// whole source line, for absence markers.
fn commands_in(file: &str, idx: usize, code: &str, context: &str, out: &mut Vec<DocRef>) {
    let bytes = code.as_bytes();
    let mut search = 0;
    while let Some(pos) = code[search..].find("systemctl") {
        let start = search + pos;
        let end = start + "systemctl".len();
        search = end;
        let boundary_before = start == 0
            || matches!(
                bytes[start - 1],
                b' ' | b'\t'
                    | b'\''
                    | b'"'
                    | b'('
                    | b'!'
                    | b';'
                    | b'|'
                    | b'&'
                    | b'`'
                    | b'$'
                    | b'/'
                    | b'{'
            );
        let boundary_after = end == bytes.len() || matches!(bytes[end], b' ' | b'\t');
        if !boundary_before || !boundary_after {
            continue;
        }
        let rest = &code[end..];
        let stop = rest
            .find([';', '|', '&', ')', '\'', '"', '`', '#', '\n'])
            .unwrap_or(rest.len());
        let args = &rest[..stop];
        let command = format!("systemctl{}", args.trim_end());
        // Where the command starts in the context line, for `!` negation.
        let ctx_start = context.find(code).map(|o| o + start).unwrap_or(0);
        let absence = is_absence_check(context, ctx_start.min(context.len()));
        let mut words = args.split_whitespace();
        let mut verb: Option<String> = None;
        let mut units = Vec::new();
        while let Some(w) = words.next() {
            if w.starts_with('-') {
                if !w.contains('=') && OPTS_WITH_VALUE.contains(&w) {
                    let _value = words.next();
                }
                continue;
            }
            match &verb {
                None => verb = Some(w.to_string()),
                Some(v) if UNIT_VERBS.contains(&v.as_str()) => {
                    if let Some(u) = unit_name(w) {
                        units.push(u);
                    }
                }
                Some(_) => {}
            }
        }
        let Some(verb) = verb else { continue };
        for unit in units {
            out.push(DocRef {
                file: file.to_string(),
                line: u32::try_from(idx + 1).unwrap_or(u32::MAX),
                unit,
                command: command.clone(),
                verb: verb.clone(),
                absence,
            });
        }
    }
}

/// A word as a unit name: suffix kept, `.service` added when there is none; `None` for
/// patterns, placeholders and anything with characters unit names do not have.
pub fn unit_name(word: &str) -> Option<String> {
    let w = word.trim_end_matches([',', ':', '.']);
    if w.is_empty()
        || !w
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '\\' | '@' | '-'))
    {
        return None;
    }
    if w.starts_with('.') || w.starts_with('-') {
        return None;
    }
    match w.rsplit_once('.') {
        Some((stem, suffix)) if UNIT_SUFFIXES.contains(&suffix) && !stem.is_empty() => {
            Some(w.to_string())
        }
        Some(_) => None,
        None => Some(format!("{w}.service")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(file: &str, text: &str) -> Vec<(u32, String, bool)> {
        scan(file, text)
            .into_iter()
            .map(|r| (r.line, r.unit, r.absence))
            .collect()
    }

    #[test]
    fn fenced_inline_and_prose() {
        let md = "# Runbook\n\
                  Run systemctl status prose-only.timer in prose: not code.\n\
                  \n\
                  ```sh\n\
                  systemctl is-active ci-docker-prune.timer\n\
                  sudo systemctl start ci-docker-prune.service && journalctl -u x\n\
                  ```\n\
                  \n\
                  Check with `systemctl is-enabled docker-prune.timer` today.\n\
                  - item: `ssh host 'systemctl status ci-docker-prune; systemctl is-active a.socket'`\n";
        assert_eq!(
            units("docs/runbook.md", md),
            vec![
                (5, "ci-docker-prune.timer".into(), false),
                (6, "ci-docker-prune.service".into(), false),
                (9, "docker-prune.timer".into(), false),
                (10, "a.socket".into(), false),
                (10, "ci-docker-prune.service".into(), false),
            ]
        );
    }

    #[test]
    fn absence_checks() {
        let md = "```\n\
                  systemctl show -p LoadState docker-prune.timer   # LoadState=not-found\n\
                  ! systemctl is-enabled docker-prune.service\n\
                  systemctl is-active docker-prune.timer   # inactive\n\
                  ```\n";
        assert_eq!(
            units("a.md", md),
            vec![
                (2, "docker-prune.timer".into(), true),
                (3, "docker-prune.service".into(), true),
                (4, "docker-prune.timer".into(), false),
            ]
        );
    }

    #[test]
    fn options_verbs_patterns_and_placeholders() {
        let txt = "systemctl --no-pager -p Id,LoadState show x.timer\n\
                   systemctl daemon-reload\n\
                   systemctl list-timers '*prune*'\n\
                   systemctl status <unit> $UNIT foo@bar.service\n\
                   mysystemctl status nope.service\n\
                   /run/current-system/sw/bin/systemctl cat y.path\n";
        assert_eq!(
            units("STATUS.txt", txt),
            vec![
                (1, "x.timer".into(), true),
                (4, "foo@bar.service".into(), false),
                (6, "y.path".into(), false),
            ]
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, failure_persistence: None, ..Default::default() })]

        /// Any text, as Markdown or plain text: no panic, and every name found is a unit name.
        #[test]
        fn scan_never_panics(s in "(systemctl|`|```|~~~|!|-p|LoadState|[ a-z.@*'\"\n#;|&-]){0,80}|.{0,300}") {
            for file in ["a.md", "a.txt"] {
                for r in scan(file, &s) {
                    proptest::prop_assert!(unit_name(&r.unit).as_deref() == Some(r.unit.as_str()), "{r:?}");
                    proptest::prop_assert!(r.line >= 1);
                }
            }
        }
    }

    #[test]
    fn unit_names() {
        assert_eq!(
            unit_name("ci-docker-prune.timer").as_deref(),
            Some("ci-docker-prune.timer")
        );
        assert_eq!(unit_name("docker").as_deref(), Some("docker.service"));
        assert_eq!(unit_name("a.timer,").as_deref(), Some("a.timer"));
        assert_eq!(unit_name("*prune*"), None);
        assert_eq!(unit_name("/etc/x"), None);
        assert_eq!(unit_name("a.conf"), None);
        assert_eq!(unit_name("{a,b}.timer"), None);
    }
}
