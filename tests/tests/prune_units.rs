//! The portable units (`prune/systemd/`) installed in the sandbox's systemd host: the timer is
//! enabled and active, and starting the service runs the binary against the sandbox daemon
//! (through the hardening) and logs its decision to the journal.

use ccci_tests::sandbox;

fn host(argv: &[&str]) -> (i64, String) {
    let info = sandbox();
    ccci_tests::block_on(ccci_sandbox::exec_in_host(info, argv))
        .unwrap_or_else(|e| panic!("exec {argv:?} in the systemd host: {e}"))
}

fn host_ok(argv: &[&str]) -> String {
    let (code, out) = host(argv);
    assert_eq!(code, 0, "{argv:?} exited {code}: {out}");
    out.trim().to_string()
}

fn journal_since(cursor_marker: &str) -> String {
    // everything the unit logged after our marker line
    let all = host_ok(&[
        "journalctl",
        "--no-pager",
        "-o",
        "cat",
        "-u",
        "ci-docker-prune.service",
    ]);
    match all.rfind(cursor_marker) {
        Some(i) => all[i..].to_string(),
        None => all,
    }
}

#[test]
fn timer_is_enabled_and_active_with_a_next_elapse() {
    sandbox();
    assert_eq!(
        host_ok(&["systemctl", "is-enabled", "ci-docker-prune.timer"]),
        "enabled"
    );
    assert_eq!(
        host_ok(&["systemctl", "is-active", "ci-docker-prune.timer"]),
        "active"
    );
    let props = host_ok(&[
        "systemctl",
        "show",
        "ci-docker-prune.timer",
        "-p",
        "LoadState,UnitFileState,ActiveState,NextElapseUSecRealtime,Persistent,TimersCalendar",
    ]);
    assert!(props.contains("LoadState=loaded"), "{props}");
    assert!(props.contains("Persistent=yes"), "{props}");
    assert!(props.contains("OnCalendar=daily"), "{props}");
    let next = props
        .lines()
        .find_map(|l| l.strip_prefix("NextElapseUSecRealtime="))
        .unwrap_or("");
    assert!(!next.is_empty() && next != "0", "no next elapse: {props}");
    // the unit is never called docker-prune (NixOS reserves that name)
    let legacy = host_ok(&["systemctl", "show", "docker-prune.timer", "-p", "LoadState", "--value"]);
    assert_eq!(legacy, "not-found");
}

#[test]
#[serial_test::file_serial(sandbox)]
fn starting_the_service_logs_its_decision_to_the_journal() {
    sandbox();
    let marker = format!("ccci-prune-units-test {}", std::process::id());
    host_ok(&["systemd-cat", "-t", "ci-docker-prune", "echo", &marker]);
    // As installed: a daily run below the threshold keeps the cache.
    host_ok(&["systemctl", "start", "ci-docker-prune.service"]);
    let result = host_ok(&["systemctl", "show", "ci-docker-prune.service", "-p", "Result", "--value"]);
    assert_eq!(result, "success");
    let log = journal_since("");
    let re = regex::Regex::new(r"ci-docker-prune: / at \d+% \((<|≥) 80%\)").unwrap();
    assert!(re.is_match(&log), "no decision line in the journal:\n{log}");

    // With the disk gate forced open (a runtime drop-in, dry run), the same hardened unit
    // reaches the sandbox daemon through /var/run/docker.sock and logs the other gates.
    let dropin_dir = "/run/systemd/system/ci-docker-prune.service.d";
    host_ok(&["mkdir", "-p", dropin_dir]);
    let conf = "[Service]\nExecStart=\nExecStart=/usr/local/bin/ci-docker-prune --threshold 0 --path / --run-stack-pattern ^ccci-never$ --dry-run\n";
    host_ok(&[
        "sh",
        "-c",
        &format!("printf '%s' '{conf}' > {dropin_dir}/ccci-test.conf"),
    ]);
    host_ok(&["systemctl", "daemon-reload"]);
    let (code, out) = host(&["systemctl", "start", "ci-docker-prune.service"]);
    host_ok(&["rm", "-rf", dropin_dir]);
    host_ok(&["systemctl", "daemon-reload"]);
    let log = journal_since("(≥ 0%)");
    assert_eq!(code, 0, "forced run failed: {out}\n{log}");
    assert!(log.contains("no live run stack"), "{log}");
    assert!(log.contains("services converged"), "{log}");
    assert!(log.contains("ci-docker-prune: dry run, would remove"), "{log}");
}
