//! Reading a real git repository (made in a temp dir with the git CLI) at revisions.

use std::path::Path;
use std::process::Command;

use ccci_nix::{units_report, GitError, GitRepo, NixError};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .unwrap_or_else(|e| panic!("git {args:?}: {e}"));
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(p, text).unwrap_or_else(|e| panic!("{e}"));
}

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/nix")
        .join(name);
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{e}"))
}

/// A repo with two commits: the F2pc-1 bad module (tagged `bad`), then the fix on `main`.
fn story_repo() -> (tempfile::TempDir, String, String) {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = tmp.path();
    git(d, &["init", "-q", "-b", "main"]);
    write(
        d,
        "nix/modules/docker-prune.nix",
        &fixture("docker-prune-bad-rev.nix"),
    );
    write(d, "nix/package.nix", &fixture("package.nix"));
    write(d, "README.md", "docs\n");
    git(d, &["add", "-A"]);
    git(d, &["commit", "-q", "-m", "bad"]);
    let bad = git(d, &["rev-parse", "HEAD"]);
    git(d, &["tag", "bad"]);
    write(
        d,
        "nix/modules/docker-prune.nix",
        &fixture("docker-prune-fixed.nix"),
    );
    git(d, &["commit", "-q", "-am", "fix"]);
    let fixed = git(d, &["rev-parse", "HEAD"]);
    (tmp, bad, fixed)
}

fn unit_names(repo: &Path, rev: &str) -> Vec<String> {
    units_report(repo, rev, None)
        .unwrap_or_else(|e| panic!("{e}"))
        .units
        .into_iter()
        .map(|u| u.name)
        .collect()
}

#[test]
fn units_at_each_revision_of_the_story() {
    let (tmp, bad, fixed) = story_repo();
    let d = tmp.path();
    assert_eq!(
        unit_names(d, &bad),
        ["docker-prune.service", "docker-prune.timer"]
    );
    assert_eq!(
        unit_names(d, "bad"),
        ["docker-prune.service", "docker-prune.timer"]
    );
    assert_eq!(
        unit_names(d, "HEAD~1"),
        ["docker-prune.service", "docker-prune.timer"]
    );
    assert_eq!(
        unit_names(d, "HEAD"),
        ["ci-docker-prune.service", "ci-docker-prune.timer"]
    );
    assert_eq!(
        unit_names(d, "main"),
        ["ci-docker-prune.service", "ci-docker-prune.timer"]
    );
    let report = units_report(d, &fixed[..10], None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        report.rev, fixed,
        "short sha resolves to the full commit id"
    );
    let json: serde_json::Value =
        serde_json::from_str(&report.to_json().unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json["rev"], fixed.as_str());
    assert_eq!(json["units"][0]["file"], "nix/modules/docker-prune.nix");
    assert_eq!(json["units"][0]["conditional"], false);
    assert!(json["unresolved"].as_array().is_some_and(|a| a.is_empty()));
}

#[test]
fn reads_the_revision_not_the_work_tree_and_reports_dirt() {
    let (tmp, bad, _) = story_repo();
    let d = tmp.path();
    let repo = GitRepo::open(d).unwrap_or_else(|e| panic!("{e}"));
    assert!(repo.dirty().unwrap_or_else(|e| panic!("{e}")).is_empty());
    // Uncommitted edit (the F2pc-1 mechanism): git at HEAD must not see it.
    let edited = fixture("docker-prune-fixed.nix").replace("ci-docker-prune", "uncommitted-name");
    write(d, "nix/modules/docker-prune.nix", &edited);
    write(
        d,
        "untracked.nix",
        "{ ... }: { systemd.services.untracked = { }; }",
    );
    assert_eq!(
        unit_names(d, "HEAD"),
        ["ci-docker-prune.service", "ci-docker-prune.timer"]
    );
    let dirty = repo.dirty().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        dirty,
        [" M nix/modules/docker-prune.nix", "?? untracked.nix"]
    );
    // The work tree is untouched by reading an older revision.
    let old = repo
        .read_file(&bad, "nix/modules/docker-prune.nix")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        String::from_utf8_lossy(&old),
        fixture("docker-prune-bad-rev.nix")
    );
    let now = std::fs::read_to_string(d.join("nix/modules/docker-prune.nix"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(now, edited);
    assert_eq!(git(d, &["rev-parse", "--abbrev-ref", "HEAD"]), "main");
}

#[test]
fn listings_at_a_revision() {
    let (tmp, bad, _) = story_repo();
    let d = tmp.path();
    // Opening from a subdirectory finds the top level.
    let repo = GitRepo::open(&d.join("nix")).unwrap_or_else(|e| panic!("{e}"));
    let files = repo
        .list_files("HEAD", "")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        files,
        [
            "README.md",
            "nix/modules/docker-prune.nix",
            "nix/package.nix"
        ]
    );
    let under = repo
        .list_files(&bad, "./nix/modules/")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(under, ["nix/modules/docker-prune.nix"]);
    let top: Vec<(String, String)> = repo
        .list_dir("HEAD", "")
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|e| (e.path, e.kind))
        .collect();
    assert_eq!(
        top,
        [
            ("README.md".to_string(), "blob".to_string()),
            ("nix".to_string(), "tree".to_string())
        ]
    );
    let nix: Vec<String> = repo
        .list_dir("HEAD", "nix")
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(nix, ["nix/modules", "nix/package.nix"]);
}

#[test]
fn typed_errors() {
    let (tmp, _, _) = story_repo();
    let d = tmp.path();
    let repo = GitRepo::open(d).unwrap_or_else(|e| panic!("{e}"));

    let not_repo = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        GitRepo::open(not_repo.path()),
        Err(GitError::NotARepo { .. })
    ));
    assert!(matches!(
        GitRepo::open(&d.join("does-not-exist")),
        Err(GitError::NotARepo { .. })
    ));
    assert!(matches!(
        units_report(not_repo.path(), "HEAD", None),
        Err(NixError::Git(GitError::NotARepo { .. }))
    ));

    for rev in [
        "no-such-branch",
        "0123456789abcdef0123456789abcdef01234567",
        "--all",
        "",
        "HEAD~9",
    ] {
        assert!(
            matches!(repo.resolve(rev), Err(GitError::UnknownRev { .. })),
            "{rev:?}: {:?}",
            repo.resolve(rev)
        );
    }
    // A tree object is not a commit.
    let tree = git(d, &["rev-parse", "HEAD^{tree}"]);
    assert!(matches!(
        repo.resolve(&tree),
        Err(GitError::UnknownRev { .. })
    ));

    assert!(matches!(
        repo.read_file("HEAD", "nix/modules/missing.nix"),
        Err(GitError::PathMissing { .. })
    ));
    assert!(matches!(
        repo.read_file("HEAD", "nix"),
        Err(GitError::NotAFile { .. })
    ));
    assert!(matches!(
        repo.list_dir("HEAD", "nope"),
        Err(GitError::PathMissing { .. })
    ));
    assert!(matches!(
        repo.list_files("HEAD", "nope"),
        Err(GitError::PathMissing { .. })
    ));
    assert!(matches!(
        repo.list_files("HEAD", "nix/modules/docker-prune.nix"),
        Err(GitError::NotADirectory { .. })
    ));
    let files = vec!["nix/modules/gone.nix".to_string()];
    assert!(matches!(
        units_report(d, "HEAD", Some(&files)),
        Err(NixError::Git(GitError::PathMissing { .. }))
    ));
}

#[test]
fn listed_files_only_and_parse_errors_name_the_file() {
    let (tmp, _, _) = story_repo();
    let d = tmp.path();
    write(
        d,
        "other/extra.nix",
        "{ ... }: { systemd.services.extra = { }; }",
    );
    git(d, &["add", "-A"]);
    git(d, &["commit", "-q", "-m", "extra"]);
    assert_eq!(
        unit_names(d, "HEAD"),
        [
            "ci-docker-prune.service",
            "ci-docker-prune.timer",
            "extra.service"
        ]
    );
    let only = vec!["./other//extra.nix".to_string()];
    let r = units_report(d, "HEAD", Some(&only)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.names().into_iter().collect::<Vec<_>>(), ["extra.service"]);
    assert_eq!(
        r.units[0].file, "other/extra.nix",
        "listed paths are reported normalised"
    );

    write(d, "broken.nix", "{ ... }:\n{\n  systemd.services.x = {\n");
    git(d, &["add", "-A"]);
    git(d, &["commit", "-q", "-m", "broken"]);
    match units_report(d, "HEAD", None) {
        Err(NixError::Parse { file, line, .. }) => {
            assert_eq!(file, "broken.nix");
            assert_eq!(line, 4);
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    write(d, "binary.nix", "");
    std::fs::write(d.join("binary.nix"), [0xff, 0xfe, 0x00]).unwrap_or_else(|e| panic!("{e}"));
    git(d, &["add", "-A"]);
    git(d, &["commit", "-q", "-m", "binary"]);
    let bin = vec!["binary.nix".to_string()];
    assert!(matches!(
        units_report(d, "HEAD", Some(&bin)),
        Err(NixError::NotUtf8 { .. })
    ));
}

#[test]
fn many_files_read_in_one_batch_are_the_committed_bytes() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = tmp.path();
    git(d, &["init", "-q", "-b", "main"]);
    // Bigger than a pipe's buffer (64 KiB), so writer and reader must overlap.
    let big: String = "x = 1;\n".repeat(40_000);
    let cases: Vec<(String, Vec<u8>)> = vec![
        ("a.nix".into(), b"{ }\n".to_vec()),
        ("empty.nix".into(), Vec::new()),
        ("dir/big.nix".into(), big.clone().into_bytes()),
        // Bytes that look like a batch header inside an object.
        (
            "dir/tricky.nix".into(),
            b"0123 blob 5\nmissing\n\n".to_vec(),
        ),
        ("sp ace.nix".into(), vec![0xff, 0x00, b'\n']),
        ("nl\nname.nix".into(), b"newline in the name".to_vec()),
    ];
    for (path, bytes) in &cases {
        let p = d.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(p, bytes).unwrap_or_else(|e| panic!("{e}"));
    }
    git(d, &["add", "-A"]);
    git(d, &["commit", "-q", "-m", "files"]);
    let repo = GitRepo::open(d).unwrap_or_else(|e| panic!("{e}"));
    let sha = repo.resolve("HEAD").unwrap_or_else(|e| panic!("{e}"));
    // Twice each, in an order unlike the tree's.
    let mut paths: Vec<String> = cases.iter().rev().map(|(p, _)| p.clone()).collect();
    paths.extend(cases.iter().map(|(p, _)| format!("./{p}")));
    let got = repo
        .read_files_at_commit(&sha, &paths)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut want: Vec<&Vec<u8>> = cases.iter().rev().map(|(_, b)| b).collect();
    want.extend(cases.iter().map(|(_, b)| b));
    assert_eq!(got.len(), want.len());
    for ((path, g), w) in paths.iter().zip(&got).zip(want) {
        assert_eq!(g, w, "{path:?}");
    }
    assert_eq!(
        repo.read_files_at_commit(&sha, &[])
            .unwrap_or_else(|e| panic!("{e}")),
        Vec::<Vec<u8>>::new()
    );
    let missing = vec!["a.nix".to_string(), "gone.nix".to_string()];
    assert!(matches!(
        repo.read_files_at_commit(&sha, &missing),
        Err(GitError::PathMissing { path, .. }) if path == "gone.nix"
    ));
    let tree = vec!["dir".to_string(), "a.nix".to_string()];
    assert!(matches!(
        repo.read_files_at_commit(&sha, &tree),
        Err(GitError::NotAFile { kind, .. }) if kind == "tree"
    ));
}
