//! How many git processes a scan starts: one `cat-file --batch` for every file, not two
//! processes per file. Its own test binary, because it puts a counting `git` first on
//! `PATH` for the whole process.

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) {
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
    assert!(out.status.success(), "git {args:?}");
}

#[test]
fn a_scan_starts_the_same_few_git_processes_for_1_or_60_files() {
    let real_git = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap_or_else(|e| panic!("{e}"))
            .stdout,
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .trim()
    .to_string();
    assert!(!real_git.is_empty(), "no git on PATH");
    let shim = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let log = shim.path().join("calls");
    let script = format!(
        "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
        log.display(),
        real_git
    );
    let shim_git = shim.path().join("git");
    std::fs::write(&shim_git, script).unwrap_or_else(|e| panic!("{e}"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim_git, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    let mut counts = Vec::new();
    for n in [1usize, 60] {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = tmp.path();
        git(d, &["init", "-q", "-b", "main"]);
        for i in 0..n {
            std::fs::write(
                d.join(format!("m{i}.nix")),
                format!("{{ ... }}: {{ systemd.services.s{i} = {{ }}; }}\n"),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
        git(d, &["add", "-A"]);
        git(d, &["commit", "-q", "-m", "m"]);
        let _ = std::fs::remove_file(&log);
        let saved = std::env::var_os("PATH").unwrap_or_default();
        let path = format!("{}:{}", shim.path().display(), saved.to_string_lossy());
        // The only test in this binary: nothing else reads PATH meanwhile.
        std::env::set_var("PATH", path);
        let report = ccci_nix::units_report(d, "HEAD", None);
        std::env::set_var("PATH", saved);
        let report = report.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.units.len(), n, "every file was read");
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        counts.push(calls.lines().count());
    }
    // open (rev-parse), resolve (rev-parse; list_files resolves once more), ls-tree,
    // cat-file --batch: five, whatever the number of files.
    assert_eq!(counts, [5, 5], "git processes for 1 and 60 files");
}
