//! The `docker://NAME` target for real: `docker exec` through the Docker API into the shared
//! sandbox's systemd host, with `DOCKER_HOST` naming the sandbox daemon — the way a reviewer
//! points `ccci-verify` at a systemd container on any daemon.
//!
//! Proves: the units checks run in that container and pass, labelled `docker://NAME`; argv
//! reaches the container as the exact words; a container that does not exist, and a daemon
//! that does not answer, exit 3 with the reason.

mod verify_cli;

use ccci_host::{Target, TargetSpec};
use ccci_tests::{block_on, sandbox};
use serde_json::Value;
use verify_cli::{run, verify};

const UNIT_CHECKS: &[&str] = &[
    "units.legacy-timer-absent",
    "units.prune-timer-active",
    "units.prune-service-loaded",
];

fn units_gate(target: &str, docker_host: &str, format: &str) -> verify_cli::Run {
    let mut cmd = verify();
    cmd.args(["gate", "2pc", "--target", target, "--format", format])
        .env("DOCKER_HOST", docker_host);
    for id in UNIT_CHECKS {
        cmd.args(["--check", id]);
    }
    run(&mut cmd)
}

#[test]
#[serial_test::file_serial(sandbox)]
fn units_checks_pass_in_the_sandbox_host_over_docker_exec() {
    let info = sandbox();
    let target = format!("docker://{}", info.host_container);
    let r = units_gate(&target, &info.docker_host, "json");
    assert_eq!(r.code, Some(0), "{}", r.show());
    let v: Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON: {e}\n{}", r.show()));
    ccci_tests::schema::assert_valid(ccci_tests::schema::GATE_REPORT, &v);
    assert_eq!(v["target"], target.as_str());
    let checks = v["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), UNIT_CHECKS.len());
    for (c, id) in checks.iter().zip(UNIT_CHECKS) {
        assert_eq!(c["id"], *id);
        assert_eq!(c["verdict"], "pass", "{c}");
        // decided from `systemctl show` run inside the container
        let ev = &c["evidence"][0];
        assert!(
            ev["command"]
                .as_str()
                .is_some_and(|s| s.starts_with("systemctl show -p ")),
            "{c}"
        );
        assert_eq!(ev["exit"], 0, "{c}");
        assert!(
            ev["output"]
                .as_str()
                .is_some_and(|o| o.contains("LoadState=")),
            "{c}"
        );
    }
    let detail = check_detail(&v, "units.prune-timer-active");
    assert!(detail.contains("ci-docker-prune.timer"), "{detail}");
}

fn check_detail(v: &Value, id: &str) -> String {
    v["checks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == id))
        .and_then(|c| c["detail"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_container_that_does_not_exist_exits_3() {
    let info = sandbox();
    let r = units_gate("docker://no-such-container", &info.docker_host, "json");
    assert_eq!(r.code, Some(3), "{}", r.show());
    assert!(
        r.stdout.is_empty(),
        "no report for an unreachable target: {}",
        r.show()
    );
    assert!(
        r.stderr.contains("docker://no-such-container") && r.stderr.contains("No such container"),
        "the reason names the container: {}",
        r.show()
    );
}

#[test]
fn a_daemon_that_does_not_answer_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let sock = format!("unix://{}/docker.sock", dir.path().display());
    let r = units_gate("docker://ccci-host", &sock, "human");
    assert_eq!(r.code, Some(3), "{}", r.show());
    assert!(
        r.stderr.contains(&sock),
        "the reason names the endpoint: {}",
        r.show()
    );
}

#[test]
fn argv_reaches_the_container_as_the_exact_words() {
    let info = sandbox();
    let t = Target::docker_exec(
        TargetSpec::Docker {
            name: info.host_container.clone(),
        },
        &info.docker_host,
        &info.host_container,
        &format!("docker://{}", info.host_container),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let words = [
        "$(id)",
        "; touch /tmp/ccci-pwned",
        "it's",
        "two  spaces",
        "",
        "*",
        "new\nline",
    ];
    let mut argv = vec!["printf", "%s\\n"];
    argv.extend(words);
    let out = block_on(t.run(&argv)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status, 0, "{}", out.combined());
    let expected: String = words.iter().map(|w| format!("{w}\n")).collect();
    assert_eq!(out.stdout_str(), expected);
    let out = block_on(t.run(&["test", "-e", "/tmp/ccci-pwned"])).unwrap();
    assert_eq!(out.status, 1, "a word ran as a command in the container");
    let out = block_on(t.run(&["sh", "-c", "exit 7"])).unwrap();
    assert_eq!(
        out.status, 7,
        "the command's exit status comes back as it is"
    );
    block_on(t.ensure_reachable()).unwrap_or_else(|e| panic!("{e}"));
}
