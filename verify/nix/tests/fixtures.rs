//! The `units --json` document of every module variant in `fixtures/nix/`, snapshotted,
//! plus explicit assertions on the cases the repro checks rely on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ccci_nix::{extract_units, Declared, NixError};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/nix")
}

/// The units of one fixture as the `units --json` document (rev is a placeholder:
/// fixtures are read from disk here; git at a revision is tested in `git.rs`).
fn declared(name: &str) -> Declared {
    let path = fixtures_dir().join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let rel = format!("fixtures/nix/{name}");
    let fu = extract_units(&rel, &text).unwrap_or_else(|e| panic!("{name}: {e}"));
    Declared {
        rev: "<fixture>".to_string(),
        units: fu.units,
        unresolved: fu.unresolved,
        masked: fu.masked,
        user_units: fu.user_units,
        initrd_units: fu.initrd_units,
    }
}

fn names(d: &Declared) -> Vec<(&str, bool)> {
    d.units
        .iter()
        .map(|u| (u.name.as_str(), u.conditional))
        .collect()
}

#[test]
fn snapshot_every_fixture() {
    let mut files: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap_or_else(|e| panic!("fixtures/nix: {e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".nix"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "fixture corpus shrank: {files:?}");
    for name in files {
        let json = declared(&name)
            .to_json()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        insta::assert_snapshot!(name.trim_end_matches(".nix").to_string(), json);
    }
}

/// File names in a directory (sorted), or a panic naming the directory.
fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The snapshots above cover the whole corpus: every `*.nix` file in `fixtures/nix/`
/// has its snapshot and every `fixtures__*` snapshot its file (so a fixture added
/// without a snapshot, or a snapshot whose fixture went, fails here), no other file
/// sits in the corpus unread, and every file in `invalid/` is a parse error with a
/// position.
#[test]
fn every_fixture_file_is_covered() {
    let dir = fixtures_dir();
    let mut modules = BTreeSet::new();
    for name in file_names(&dir) {
        // `system/` is no module of the corpus: the stand-in NixOS system flake the nixos
        // sandbox flavour builds (verify/sandbox/src/nixos.rs reads it)
        if name == "README.md" || name == "invalid" || name == "system" {
            continue;
        }
        let stem = name.strip_suffix(".nix").unwrap_or_else(|| {
            panic!("fixtures/nix/{name}: not a module, README.md, invalid/ or system/; no test reads it")
        });
        modules.insert(stem.to_string());
    }
    let snapshot_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let snapshots: BTreeSet<String> = file_names(&snapshot_dir)
        .iter()
        .filter_map(|n| n.strip_prefix("fixtures__")?.strip_suffix(".snap"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        modules, snapshots,
        "fixtures/nix/*.nix and tests/snapshots/fixtures__*.snap differ"
    );
    let invalid = file_names(&dir.join("invalid"));
    assert!(!invalid.is_empty(), "fixtures/nix/invalid/ is empty");
    for name in invalid {
        let text = std::fs::read_to_string(dir.join("invalid").join(&name))
            .unwrap_or_else(|e| panic!("invalid/{name}: {e}"));
        match extract_units(&name, &text) {
            Err(NixError::Parse { line, column, .. }) => {
                assert!(line >= 1 && column >= 1, "invalid/{name}: {line}:{column}")
            }
            other => panic!("invalid/{name}: expected a parse error, got {other:?}"),
        }
    }
}

#[test]
fn bad_rev_declares_legacy_names_fixed_rev_the_new_ones() {
    let bad = declared("docker-prune-bad-rev.nix");
    assert_eq!(
        names(&bad),
        vec![("docker-prune.service", true), ("docker-prune.timer", true)]
    );
    let fixed = declared("docker-prune-fixed.nix");
    assert_eq!(
        names(&fixed),
        vec![
            ("ci-docker-prune.service", false),
            ("ci-docker-prune.timer", false)
        ]
    );
    assert!(bad.unresolved.is_empty() && fixed.unresolved.is_empty());
}

#[test]
fn nixpkgs_style_start_at_optional_is_a_conditional_timer() {
    let d = declared("nixpkgs-docker-style.nix");
    assert_eq!(
        names(&d),
        vec![
            ("docker-prune.service", true),
            ("docker-prune.timer", true),
            ("docker.service", true),
            ("docker.socket", true),
        ]
    );
}

#[test]
fn generated_names_are_unresolved_not_dropped() {
    let d = declared("generated-unresolved.nix");
    assert_eq!(names(&d), vec![("known.service", false)]);
    let texts: Vec<&str> = d.unresolved.iter().map(|u| u.text.as_str()).collect();
    for needle in [
        "mapAttrs'",
        "listToAttrs",
        "${prefix}",
        "${cfg.name}-watch",
        "${cfg.main}",
        "cfg.extraTargets",
    ] {
        assert!(
            texts.iter().any(|t| t.contains(needle)),
            "{needle} missing from {texts:#?}"
        );
    }
}

#[test]
fn comments_strings_and_packages_yield_nothing() {
    for f in ["comments-and-strings.nix", "package.nix"] {
        let d = declared(f);
        assert!(d.units.is_empty(), "{f}: {:?}", d.units);
        assert!(d.unresolved.is_empty(), "{f}: {:?}", d.unresolved);
    }
}

#[test]
fn invalid_files_give_parse_errors_with_position() {
    for (name, want_line) in [
        ("unterminated.nix.invalid", 6u32),
        ("bad-token.nix.invalid", 3),
    ] {
        let path = fixtures_dir().join("invalid").join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        match extract_units(name, &text) {
            Err(NixError::Parse {
                file,
                line,
                column,
                message,
            }) => {
                assert_eq!(file, name);
                assert_eq!(line, want_line, "{name}: {message} at {line}:{column}");
                assert!(column >= 1);
                let shown = NixError::Parse {
                    file,
                    line,
                    column,
                    message,
                }
                .to_string();
                assert!(
                    shown.starts_with(&format!("{name}:{want_line}:")),
                    "{shown}"
                );
            }
            other => panic!("{name}: expected a parse error, got {other:?}"),
        }
    }
}
