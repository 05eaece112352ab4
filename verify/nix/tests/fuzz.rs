//! Fuzzing the unit extractor with proptest: arbitrary text, Nix-like token soup and
//! mutated fixtures must never panic or hang (each case runs under a timeout in a
//! forked process). Plus deterministic pathological inputs (deep nesting, long chains,
//! self-referential and exponentially referencing `let` bindings).
//!
//! CI runs the default case counts below. A longer bounded run:
//! `PROPTEST_CASES=20000 cargo test -p ccci-nix --release --test fuzz`.

use std::path::Path;
use std::time::{Duration, Instant};

use ccci_nix::extract_units;
use proptest::prelude::*;

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ";",
    "=",
    ".",
    ":",
    ",",
    "...",
    "?",
    "@",
    "//",
    "++",
    "+",
    "||",
    "&&",
    "->",
    "!",
    "==",
    "let",
    "in",
    "with",
    "rec",
    "inherit",
    "if",
    "then",
    "else",
    "assert",
    "or",
    "systemd",
    "services",
    "timers",
    "sockets",
    "paths",
    "mounts",
    "automounts",
    "targets",
    "slices",
    "startAt",
    "where",
    "config",
    "options",
    "mkIf",
    "mkMerge",
    "mkDefault",
    "mkForce",
    "mkOverride",
    "optionalAttrs",
    "optional",
    "optionals",
    "lib",
    "x",
    "name",
    "\"a-b\"",
    "\"${name}\"",
    "\"${x}-y\"",
    "''\n  s\n''",
    "${",
    "\"",
    "''",
    "# c\n",
    "/* c */",
    "[ ]",
    "{ }",
    "./p.nix",
    "42",
    "\"/mnt/a\"",
    "systemd.services.",
    "systemd.timers.x",
    "\n",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..200).prop_map(|v| v.join(" "))
}

fn fixture_texts() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/nix");
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        let mut names: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        names.sort();
        for p in names {
            if p.extension().is_some_and(|e| e == "nix") {
                if let Ok(t) = std::fs::read_to_string(&p) {
                    out.push(t);
                }
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, &'static str),
    Duplicate(usize, usize),
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for e in edits {
        let n = bytes.len().max(1);
        match *e {
            Edit::Delete(a, len) => {
                let a = a % n;
                let b = (a + len % 64).min(bytes.len());
                if a < b {
                    bytes.drain(a..b);
                }
            }
            Edit::Insert(a, tok) => {
                let a = a % n;
                let a = a.min(bytes.len());
                bytes.splice(a..a, tok.bytes());
            }
            Edit::Duplicate(a, len) => {
                let a = a % n;
                let b = (a + len % 256).min(bytes.len());
                if a < b {
                    let chunk: Vec<u8> = bytes[a..b].to_vec();
                    bytes.splice(b..b, chunk);
                }
            }
        }
    }
    // Byte edits may split a UTF-8 sequence; the extractor takes &str.
    String::from_utf8_lossy(&bytes).into_owned()
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<usize>()).prop_map(|(a, l)| Edit::Delete(a, l)),
        (any::<usize>(), prop::sample::select(TOKENS)).prop_map(|(a, t)| Edit::Insert(a, t)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, l)| Edit::Duplicate(a, l)),
    ]
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        timeout: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_text_never_panics(s in ".{0,400}") {
        let _ = extract_units("f.nix", &s);
    }

    #[test]
    fn token_soup_never_panics(s in token_soup()) {
        if let Ok(fu) = extract_units("f.nix", &s) {
            // Whatever is found names a unit with its suffix.
            for u in fu.units {
                prop_assert!(u.name.contains('.'), "{u:?}");
                prop_assert!(u.line >= 1);
            }
        }
    }

    #[test]
    fn mutated_fixtures_never_panic(idx in any::<prop::sample::Index>(), edits in prop::collection::vec(edit(), 1..8)) {
        let texts = fixture_texts();
        prop_assume!(!texts.is_empty());
        let text = &texts[idx.index(texts.len())];
        let mutated = apply(text, &edits);
        if let Ok(fu) = extract_units("f.nix", &mutated) {
            let lines = mutated.lines().count().max(1) as u32 + 1;
            for u in fu.units.iter() {
                prop_assert!(u.line >= 1 && u.line <= lines, "{u:?} beyond {lines} lines");
            }
            for u in fu.unresolved.iter() {
                prop_assert!(u.line >= 1 && u.line <= lines, "{u:?} beyond {lines} lines");
            }
        }
    }
}

/// Each pathological input must finish; it may yield a parse error or an `unresolved`
/// note, never a panic or a stack overflow. Returns the elapsed time for the message.
fn finishes(name: &str, src: &str) -> Duration {
    let t = Instant::now();
    let r = extract_units(name, src);
    let el = t.elapsed();
    if let Ok(fu) = r {
        assert!(fu.units.len() < 100_000, "{name}: {} units", fu.units.len());
    }
    el
}

#[test]
fn pathological_inputs_finish() {
    // Run on a thread with the default 2 MiB stack so the bound is what CI sees.
    let h = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            let n = 20_000;
            let cases: Vec<(&str, String)> = vec![
                (
                    "deep-parens",
                    format!("{}x{}", "(".repeat(n), ")".repeat(n)),
                ),
                (
                    "long-plus-chain",
                    format!(
                        "{{ systemd.services.${{{}\"a\"}} = {{}}; }}",
                        "\"a\" + ".repeat(n)
                    ),
                ),
                (
                    "long-update-chain",
                    format!(
                        "{{ ... }}: {}{{ systemd.services.x = {{}}; }}",
                        "{ } // ".repeat(n)
                    ),
                ),
                (
                    "deep-attrsets",
                    format!(
                        "{{ systemd.services.x = {}1{}; }}",
                        "{ a = ".repeat(2_000),
                        "; }".repeat(2_000)
                    ),
                ),
                (
                    "deep-mkif",
                    format!(
                        "{{ c, ... }}: {}{{ systemd.services.x = {{}}; }}",
                        "mkIf c (".repeat(2_000)
                    ) + &")".repeat(2_000),
                ),
                (
                    "long-list",
                    format!(
                        "{{ systemd.mounts = [ {} ]; }}",
                        "{ where = \"/a\"; } ".repeat(n)
                    ),
                ),
                (
                    "cyclic-let",
                    "let a = b; b = a; in { systemd.services.${a} = {}; x = a; } // a".to_string(),
                ),
                ("exponential-let-strings", {
                    let mut s = String::from("let a0 = \"x\";\n");
                    for i in 1..40 {
                        s.push_str(&format!("a{i} = \"${{a{p}}}${{a{p}}}\";\n", p = i - 1));
                    }
                    s.push_str("in { systemd.services.${a39} = {}; }");
                    s
                }),
                ("exponential-let-merges", {
                    let mut s =
                        String::from("{ lib, ... }: let m0 = { systemd.services.x = {}; };\n");
                    for i in 1..40 {
                        s.push_str(&format!("m{i} = lib.mkMerge [ m{p} m{p} ];\n", p = i - 1));
                    }
                    s.push_str("in m39");
                    s
                }),
            ];
            cases
                .into_iter()
                .map(|(name, src)| (name, finishes(name, &src)))
                .collect::<Vec<_>>()
        })
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let times = h
        .join()
        .unwrap_or_else(|_| panic!("a pathological input crashed the extractor thread"));
    for (name, t) in times {
        eprintln!("{name}: {t:?}");
    }
}

#[test]
fn exponential_bindings_are_reported_not_silently_cut() {
    let mut s = String::from("{ lib, ... }: let m0 = { systemd.services.x = {}; };\n");
    for i in 1..40 {
        s.push_str(&format!("m{i} = lib.mkMerge [ m{p} m{p} ];\n", p = i - 1));
    }
    s.push_str("in m39");
    let fu = extract_units("exp.nix", &s).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        fu.unresolved
            .iter()
            .any(|u| u.text.contains("analysis stopped")),
        "{:?}",
        fu.unresolved
    );
}
