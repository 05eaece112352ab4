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
        // sent to the daemon as 0s while a dry run would decide with 0.5 s
        (&["--until", "500ms"], "'500ms'"),
        // one second more than the daemon's Go duration holds (it answers 500)
        (&["--until", "9223372037s"], "'9223372037s'"),
        (&["--until", "300years"], "'300years'"),
        (&["--run-stack-pattern", "^(oops"], "'^(oops'"),
        (&["--docker-host", "ssh://ci@host"], "'ssh://ci@host'"),
        (&["--path", "relative"], "'relative'"),
        (
            &["--threshold", "0", "--path", "/no/such/dir"],
            "/no/such/dir",
        ),
        (&["--no-such-flag"], "--no-such-flag"),
        // issue 17 item 13: a low watermark given at or above the threshold
        (
            &["--threshold", "80", "--evict-low-watermark", "80"],
            "invalid evict_low_watermark 80%: it must be below the threshold (80%)",
        ),
        (&["--gate-stall-warn-after", "soon"], "'soon'"),
    ];
    for (args, needle) in cases {
        // no daemon there: a value that got through to a run would end in exit 1
        bin()
            .args(*args)
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .assert()
            .code(2)
            .stderr(predicate::str::contains(*needle));
    }
}

/// Issue 11 item 4: `--json` prints one object on exit 2 too, `"outcome":"error"`, with the
/// message; a usage error clap catches included.
#[test]
fn usage_errors_still_print_one_json_object() {
    let cases: &[(&[&str], &str)] = &[
        (&["--threshold", "101"], "invalid threshold '101'"),
        (&["--until", "500ms"], "'500ms'"),
        (
            &["--threshold", "0", "--path", "/no/such/dir"],
            "/no/such/dir",
        ),
        (&["--no-such-flag"], "--no-such-flag"),
    ];
    for (args, needle) in cases {
        let out = bin().args(*args).arg("--json").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: one JSON line: {stdout}");
        let j: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        ccci_tests::schema::assert_valid(ccci_tests::schema::PRUNE_REPORT, &j);
        assert_eq!(j["version"], 1);
        assert_eq!(j["outcome"], "error", "{j}");
        assert!(
            j["error"].as_str().is_some_and(|e| e.contains(needle)),
            "{args:?}: {j}"
        );
        assert_eq!(j["removed"]["images"], serde_json::json!([]));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(needle),
            "{args:?}"
        );
    }
    // help is help, not an error
    bin().args(["--help", "--json"]).assert().success();
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
    // --json: one object on exit 1 too (issue 11 item 4), with the message
    let out = bin()
        .args(["--threshold", "0", "--json", "--docker-host", &host])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot reach Docker at {host}")),
        "{stderr}"
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {:?}", out.stdout));
    assert_eq!(j["outcome"], "error", "{j}");
    assert!(
        j["error"]
            .as_str()
            .is_some_and(|e| e.starts_with(&format!("cannot reach Docker at {host}"))),
        "{j}"
    );
    // the disk gate was decided before the daemon was contacted
    assert_eq!(j["gates"][0]["gate"], "disk", "{j}");
    assert_eq!(j["gates"][0]["pass"], true, "{j}");
    assert_eq!(j["removed"]["containers"], serde_json::json!([]));
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
