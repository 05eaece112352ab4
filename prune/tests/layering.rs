//! The prune crate's modules run one way (DESIGN.md, "Style to follow"; docs/architecture.md,
//! "Layers of the prune"): the daemon's answers and the settings at the bottom, facts above
//! them, policy above the facts, the steps and the run on top, no import circle.
//!
//! This test reads every module of `prune/src` (a directory module counts as one), takes
//! each reference to another module of the crate — `use crate::…` lines, `crate::x::…` paths
//! in code, `super::x` from a directory module's files; doc comments and `#[cfg(test)]` modules
//! left out — and checks that (1) the graph has no circle and (2) no module reaches a module of
//! a higher layer than its own, per the hand-written table [`LAYERS`]. A module missing from
//! the table fails too, so a new module is placed on purpose.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, bottom first. A module may use modules of its own layer or below, never above.
/// Kept in step with docs/architecture.md.
const LAYERS: &[(&str, &[&str])] = &[
    // the daemon's answers as plain types, the settings and their defaults, atomic state writes
    ("bottom", &["answers", "config", "statefile"]),
    // the one module that talks to the daemon; facts derived from its answers
    ("facts", &["docker", "roots", "usage"]),
    // policy: decisions that only read facts
    ("policy", &["gates", "settle", "stall", "plan", "evict"]),
    // the plan's removal steps, one request each
    ("steps", &["steps"]),
    // the wording of every line, the JSON report, the metrics
    ("report", &["report", "metrics"]),
    // the run: gates, plan, steps, re-gated
    ("run", &["actions"]),
];

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Source text without doc/line comments and without `#[cfg(test)]` items (a test module may
/// reach anywhere: it is a consumer).
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            // skip the item that follows: up to the end of its braces (or its `;`)
            let mut depth = 0i32;
            let mut opened = false;
            for l in lines.by_ref() {
                let l = strip_comment(l);
                depth += l.matches('{').count() as i32 - l.matches('}').count() as i32;
                opened |= l.contains('{');
                if (opened && depth <= 0) || (!opened && l.trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        out.push_str(strip_comment(line));
        out.push('\n');
    }
    out
}

/// A line without its `//` comment (a `//` inside a string literal is kept: the crate's strings
/// hold `unix://` and `http://`, never `crate::`).
fn strip_comment(line: &str) -> &str {
    let mut in_str = false;
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if in_str => i += 1,
            b'"' => in_str = !in_str,
            b'/' if !in_str && b.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
        i += 1;
    }
    line
}

fn ident_at(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The modules `code` names after `prefix` (`crate::` or `super::`): `prefix x::…`,
/// `prefix x;` and every top-level name of `prefix {x::…, y, z::{…}}`.
fn referenced(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices(prefix) {
        // `foo::crate::` is not the crate root
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut expect_name = true;
            let mut j = 0;
            let g = group.as_bytes();
            while j < g.len() && depth > 0 {
                match g[j] {
                    b'{' => depth += 1,
                    b'}' => depth -= 1,
                    b',' if depth == 1 => expect_name = true,
                    c if depth == 1 && expect_name && (c.is_ascii_alphabetic() || c == b'_') => {
                        let name = ident_at(&group[j..]);
                        j += name.len();
                        found.insert(name);
                        expect_name = false;
                        continue;
                    }
                    _ => {}
                }
                j += 1;
            }
        } else {
            let name = ident_at(rest);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// The module graph of the crate whose sources are `files`: (module, file name, text). Only
/// edges to modules of the crate count; a module's edge to itself is dropped.
fn graph(files: &[(String, String, String)]) -> Graph {
    let modules: BTreeSet<&str> = files.iter().map(|(m, _, _)| m.as_str()).collect();
    let mut g = Graph::new();
    for (module, file, text) in files {
        let code = code_of(text);
        let mut deps = referenced(&code, "crate::");
        // the files of a directory module reach their parent's siblings through `super::`
        // only from its `mod.rs`
        if file == "mod.rs" {
            deps.extend(referenced(&code, "super::"));
        }
        let e = g.entry(module.clone()).or_default();
        e.extend(
            deps.into_iter()
                .filter(|d| d != module && modules.contains(d.as_str())),
        );
    }
    g
}

/// A circle of `g`, if there is one (the modules on it, the first repeated at the end).
fn circle(g: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        n: &str,
        g: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(n).copied().unwrap_or(Mark::New) {
            Mark::Done => return None,
            Mark::Open => {
                let start = path.iter().position(|p| p == n).unwrap_or(0);
                let mut c = path[start..].to_vec();
                c.push(n.to_string());
                return Some(c);
            }
            Mark::New => {}
        }
        marks.insert(n.to_string(), Mark::Open);
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, marks, path) {
                return Some(c);
            }
        }
        path.pop();
        marks.insert(n.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for n in g.keys() {
        if let Some(c) = visit(n, g, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

/// Edges that go up the layers, and modules the table does not place.
fn layer_violations(g: &Graph) -> Vec<String> {
    let layer_of = |m: &str| LAYERS.iter().position(|(_, ms)| ms.contains(&m));
    let mut bad = Vec::new();
    for (m, deps) in g {
        let Some(lm) = layer_of(m) else {
            bad.push(format!("module {m} is in no layer of the table"));
            continue;
        };
        for d in deps {
            match layer_of(d) {
                Some(ld) if ld > lm => bad.push(format!(
                    "{m} ({}) uses {d} ({}), a higher layer",
                    LAYERS[lm].0, LAYERS[ld].0
                )),
                _ => {}
            }
        }
    }
    bad
}

/// Every module of `prune/src` but the crate roots: (module, file name, text).
fn sources() -> Vec<(String, String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&src)
        .unwrap_or_else(|e| panic!("read {}: {e}", src.display()))
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut inner: Vec<_> = walk(&path);
            inner.sort();
            for f in inner {
                let file = f
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let text = std::fs::read_to_string(&f)
                    .unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
                files.push((name.clone(), file, text));
            }
        } else if let Some(module) = name.strip_suffix(".rs") {
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            files.push((module.to_string(), name.clone(), text));
        }
    }
    files
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(Result::ok)
    {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

fn render(g: &Graph) -> String {
    g.iter()
        .map(|(m, d)| format!("{m} -> {}", d.iter().cloned().collect::<Vec<_>>().join(" ")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_prune_crate_has_no_import_circle_and_its_layers_run_one_way() {
    let files = sources();
    // the modules this test knows exist: it reads what it should
    let modules: BTreeSet<&str> = files.iter().map(|(m, _, _)| m.as_str()).collect();
    for m in [
        "answers", "config", "docker", "gates", "plan", "evict", "actions",
    ] {
        assert!(modules.contains(m), "module {m} not read: {modules:?}");
    }
    let g = graph(&files);
    let text = render(&g);
    assert!(
        g.get("actions").is_some_and(|d| d.contains("docker")),
        "the parser misses edges:\n{text}"
    );
    assert_eq!(circle(&g), None, "an import circle:\n{text}");
    let bad = layer_violations(&g);
    assert!(bad.is_empty(), "{bad:#?}\n{text}");
    // the bottom depends on nothing
    for m in LAYERS[0].1 {
        assert!(
            g.get(*m).is_none_or(BTreeSet::is_empty),
            "{m} is the bottom:\n{text}"
        );
    }
}

/// The checker finds what it must: the circles of the tree at `24c30d4` (reduced to the lines
/// that made them), an upward edge, a module the table does not place; and it ignores doc
/// comments, strings and test modules.
#[test]
fn the_checker_finds_a_circle_and_an_upward_edge() {
    let f = |m: &str, text: &str| (m.to_string(), format!("{m}.rs"), text.to_string());
    let before = [
        f(
            "config",
            "fn d() -> u8 { crate::evict::DEFAULT_LOW_WATERMARK }",
        ),
        f("evict", "use crate::docker::{ContainerInfo, ImageInfo};"),
        f(
            "docker",
            "use crate::config::{go_duration, DockerHost};\nuse crate::usage::{EventMark, UsageEvent};",
        ),
        f("usage", "use crate::docker::ImageInfo;\nfn r() { crate::plan::repo_of_tag(\"a\"); }"),
        f("plan", "use crate::docker::{BuildCacheRecord, ContainerInfo};"),
    ];
    let g = graph(&before);
    let c = circle(&g).expect("the circles of 24c30d4");
    assert!(c.len() >= 3 && c.first() == c.last(), "{c:?}");
    assert_eq!(
        g["docker"],
        BTreeSet::from(["config".to_string(), "usage".to_string()])
    );
    assert_eq!(
        g["plan"],
        BTreeSet::from(["docker".to_string()]),
        "nested groups read"
    );

    // no circle, but `answers` (bottom) reaching `plan` (policy) goes up
    let up = [
        f("answers", "pub fn r() { crate::plan::repo_of_tag(\"x\"); }"),
        f("plan", "fn p() {}"),
    ];
    let g = graph(&up);
    assert_eq!(circle(&g), None);
    assert_eq!(
        layer_violations(&g),
        vec!["answers (bottom) uses plan (policy), a higher layer".to_string()]
    );
    assert_eq!(
        layer_violations(&graph(&[f("newcomer", "")])),
        vec!["module newcomer is in no layer of the table".to_string()]
    );

    // not edges: doc comments, comments, strings, other crates' `crate::`, test modules
    let quiet = [
        f(
            "answers",
            "//! see [`crate::plan`]\n/// [`crate::evict`]\nconst S: &str = \"unix://x\"; // crate::usage\nuse other::crate::plan;\n#[cfg(test)]\nmod tests {\n    use crate::plan::Plan;\n    fn t() { let _ = crate::evict::X; }\n}\n",
        ),
        f("plan", ""),
        f("evict", ""),
        f("usage", ""),
    ];
    let g = graph(&quiet);
    assert!(g["answers"].is_empty(), "{:?}", g["answers"]);
}
