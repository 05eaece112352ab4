//! Issue 17, item 13: state hygiene, against the real sandbox daemon through the recording
//! proxy. A state directory that cannot be written (read-only, full) neither makes each run
//! contact Docker below the threshold nor aborts a run above it; a dry run writes no state; a
//! run that cannot have the directory's lock (another run holds it) writes none either; a
//! stdout nobody reads ends the run by the contract (exit 1 with `--json`, a message on
//! stderr), never with a panic (exit 101).

mod prune_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use prune_common::*;

/// A tmpfs mounted at a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(options: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "ccci-prune-state"])
            .arg(dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "mount -t tmpfs -o {options} {}", dir.path().display());
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A read-only state directory (empty: the daemon's roots are not known).
fn read_only() -> Tmpfs {
    Tmpfs::mount("ro,size=1m")
}

/// A read-only state directory that remembers roots the daemon no longer has (a data-root
/// moved since): a run over the threshold learns the new ones and cannot keep them.
fn read_only_stale_roots() -> Tmpfs {
    let t = Tmpfs::mount("size=1m");
    std::fs::write(
        t.path().join("daemon-roots.json"),
        r#"{"store":"legacy","docker_root":"/srv/docker-moved-away","containerd_root":null,"containerd_how":""}"#,
    )
    .unwrap();
    let ok = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(t.path())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "remount read-only");
    t
}

/// A full state directory: a small tmpfs filled to the last block.
fn full() -> Tmpfs {
    let t = Tmpfs::mount("size=64k");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k", "count=64"])
        .arg(format!("of={}", t.path().join("fill").display()))
        .stderr(Stdio::null())
        .status();
    let err = std::fs::write(t.path().join("x"), [0u8; 8192]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(28), "precondition: full ({err})");
    let _ = std::fs::remove_file(t.path().join("x"));
    t
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A real run over the threshold that removes nothing old enough to matter here.
const OPEN: [&str; 8] = [
    "--threshold",
    "0",
    "--until",
    "3000d",
    "--run-stack-pattern",
    NO_RUN_PATTERN,
    "--json",
    "--evict-keep-recent",
];

fn open_args() -> Vec<&'static str> {
    let mut a = OPEN.to_vec();
    a.push("3000d");
    a
}

#[rstest::rstest]
#[case::read_only(read_only as fn() -> Tmpfs, "Read-only file system")]
#[case::full(full as fn() -> Tmpfs, "No space left on device")]
#[case::read_only_stale_roots(read_only_stale_roots as fn() -> Tmpfs, "Read-only file system")]
#[serial_test::file_serial(sandbox)]
fn an_unwritable_state_dir_neither_contacts_docker_nor_aborts(
    #[case] make: fn() -> Tmpfs,
    #[case] why: &str,
) {
    let dir = make();
    // below the threshold, twice: the daemon is never contacted
    for _ in 0..2 {
        let run = prune_with_state_dir(&["--threshold", "100", "--json"], dir.path());
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(run.json()["skipped_by"], "disk", "{}", run.stdout);
        assert!(
            run.requests.is_empty(),
            "a run below the threshold contacted Docker: {:?}\n{}",
            run.requests,
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!(
                "ci-docker-prune: state directory {} cannot be written (",
                dir.path().display()
            )) && run.stderr.contains(why)
                && run.stderr.contains("this run writes no state"),
            "{}",
            run.stderr
        );
    }
    // over the threshold: the run goes on without its state and does not abort (before, with
    // stale roots: exit 1 "prune aborted, nothing further removed: cannot measure disk usage
    // of …/daemon-roots.json: Read-only file system")
    let run = prune_with_state_dir(&open_args(), dir.path());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.json()["outcome"],
        "pruned",
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(!run.stderr.contains("aborted"), "{}", run.stderr);
}

#[test]
#[serial_test::file_serial(sandbox)]
fn a_dry_run_writes_no_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut args = open_args();
    args.push("--dry-run");
    let run = prune_with_state_dir(&args, &state);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["outcome"], "dry-run", "{}", run.stdout);
    assert!(
        run.requests.iter().any(|r| r.path == "/events"),
        "the dry run did not read usage: {:?}",
        run.requests
    );
    assert!(
        !state.exists() || entries(&state).is_empty(),
        "a dry run wrote state: {:?}",
        entries(&state)
    );
    // the real run writes it: what the dry run left out is there to be seen
    let run = prune_with_state_dir(&open_args(), &state);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        entries(&state),
        ["daemon-roots.json", "lock", "usage.json"],
        "{}",
        run.stderr
    );
}

/// A child holding the state directory's lock (`flock(1)`), killed on drop.
struct Holder(std::process::Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[serial_test::file_serial(sandbox)]
fn a_run_that_cannot_have_the_lock_writes_no_state() {
    let dir = tempfile::tempdir().unwrap();
    let state: PathBuf = dir.path().to_path_buf();
    let lock = state.join("lock");
    let holder = Holder(
        // `-o`: the lock is held by flock(1) alone, not by its `sleep` (killed with it)
        Command::new("flock")
            .args(["-x", "-o"])
            .arg(&lock)
            .args(["sleep", "120"])
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_for(std::time::Duration::from_secs(10), || lock.exists()),
        "precondition: the lock is held"
    );
    let run = prune_with_state_dir(&open_args(), &state);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["outcome"], "pruned", "{}", run.stdout);
    assert!(
        run.stderr.contains(
            "is in use by another ci-docker-prune run (its lock was not released within 10s)"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(entries(&state), ["lock"], "{}", run.stderr);
    drop(holder);
    let run = prune_with_state_dir(&open_args(), &state);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        entries(&state),
        ["daemon-roots.json", "lock", "usage.json"],
        "{}",
        run.stderr
    );
}

/// `ci-docker-prune ARGS` writing to a pipe whose reading end is already closed (a consumer
/// that went away: every write fails with `EPIPE`): (exit code, stderr). Rust reopens a
/// *closed* standard descriptor on `/dev/null` at startup, so `>&-` would not show it.
fn with_stdout_unread(args: &[&str]) -> (i32, String) {
    let bin = ccci_tests::prune_bin().unwrap_or_else(|e| panic!("prune binary: {e}"));
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(bin)
        .args(args)
        .args(["--docker-host", &sb().docker_host])
        .env_remove("DOCKER_HOST")
        .env_remove("STATE_DIRECTORY")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
#[serial_test::file_serial(sandbox)]
fn a_closed_stdout_ends_the_run_by_the_contract() {
    let mut args = open_args();
    args.push("--dry-run");
    // --json: the object cannot be delivered: exit 1, said on stderr
    let (code, stderr) = with_stdout_unread(&args);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "ci-docker-prune: error: cannot write the JSON report to stdout: Broken pipe"
        ),
        "{stderr}"
    );
    // a usage error keeps its exit 2
    let (code, stderr) = with_stdout_unread(&["--threshold", "101", "--json"]);
    assert_eq!(code, 2, "{stderr}");
    // without --json the log lines are all there is on stdout: they are dropped, exit 0
    let args: Vec<&str> = args.into_iter().filter(|a| *a != "--json").collect();
    let (code, stderr) = with_stdout_unread(&args);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(code, 0, "{stderr}");
}
