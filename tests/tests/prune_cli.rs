//! The `ci-docker-prune` command line: exit codes and messages that need no daemon.

use std::os::unix::net::UnixListener;

use assert_cmd::Command;
use predicates::prelude::*;

fn bin() -> Command {
    let path = ccci_tests::prune_bin().unwrap_or_else(|e| panic!("prune binary: {e}"));
    let mut c = Command::new(path);
    c.env_remove("DOCKER_HOST");
    c
}

#[test]
fn help_explains_the_policy() {
    bin()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Never `all`, never volumes"))
        .stdout(predicate::str::contains("no tag AND no repo digest"))
        .stdout(predicate::str::contains("--run-stack-pattern"));
}

#[test]
fn bad_values_exit_2_naming_the_value() {
    let cases: &[(&[&str], &str)] = &[
        (&["--threshold", "101"], "'101'"),
        (&["--threshold", "lots"], "'lots'"),
        (&["--until", "24 parsecs"], "'24 parsecs'"),
        (&["--run-stack-pattern", "^(oops"], "'^(oops'"),
        (&["--docker-host", "ssh://ci@host"], "'ssh://ci@host'"),
        (&["--path", "relative"], "'relative'"),
        (
            &["--threshold", "0", "--path", "/no/such/dir"],
            "/no/such/dir",
        ),
        (&["--no-such-flag"], "--no-such-flag"),
    ];
    for (args, needle) in cases {
        bin()
            .args(*args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(*needle));
    }
}

#[test]
fn bad_config_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("prune.toml");
    std::fs::write(&f, "threshold = 80\nvolumes = true\n").unwrap();
    bin()
        .arg("--config")
        .arg(&f)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("volumes"));
    std::fs::write(&f, "until = \"forever\"\n").unwrap();
    bin()
        .arg("--config")
        .arg(&f)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("'forever'"));
    bin()
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("missing.toml"));
    // flags win over the file: a bad file value overridden by a good flag is fine
    std::fs::write(&f, "threshold = 100\n").unwrap();
    bin()
        .arg("--config")
        .arg(&f)
        .args(["--threshold", "101"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("'101'"));
}

#[test]
fn below_threshold_needs_no_daemon() {
    bin()
        .args([
            "--threshold",
            "100",
            "--docker-host",
            "unix:///nonexistent/docker.sock",
            "--json",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""skipped_by":"disk""#))
        .stderr(predicate::str::contains(
            "keeping local image cache, nothing to do",
        ));
}

#[test]
fn unreachable_daemon_exits_1_with_a_clear_message() {
    bin()
        .args([
            "--threshold",
            "0",
            "--docker-host",
            "unix:///nonexistent/docker.sock",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "cannot reach Docker at unix:///nonexistent/docker.sock",
        ));
    // a socket file nobody answers on
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("dead.sock");
    drop(UnixListener::bind(&sock).unwrap());
    let host = format!("unix://{}", sock.display());
    bin()
        .args(["--threshold", "0", "--json", "--docker-host", &host])
        .assert()
        .code(1)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains(format!(
            "cannot reach Docker at {host}"
        )));
    // DOCKER_HOST is honoured when no flag is given
    bin()
        .env("DOCKER_HOST", &host)
        .args(["--threshold", "0"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "cannot reach Docker at {host}"
        )));
}
