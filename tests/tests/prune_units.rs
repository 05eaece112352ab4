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

/// The host's clock, unix seconds (journal queries are relative to it).
fn host_now() -> String {
    host_ok(&["date", "+%s"])
}

/// What the unit logged since `since` (unix seconds), waiting up to 20 s for `want` to show up
/// (journald receives a oneshot's last lines asynchronously).
fn journal_since(since: &str, want: &str) -> String {
    let mut log = String::new();
    for _ in 0..40 {
        log = host_ok(&[
            "journalctl",
            "--no-pager",
            "-o",
            "cat",
            "-u",
            "ci-docker-prune.service",
            "--since",
            &format!("@{since}"),
        ]);
        if log.contains(want) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    log
}

/// (Re)install this repo's units and binary: other suites share the host and may have left it
/// in another state (they hold the same `sandbox` lock while they do).
fn redeploy() {
    let info = sandbox();
    let deploy = ccci_tests::default_deploy().unwrap_or_else(|e| panic!("deploy set-up: {e}"));
    ccci_tests::block_on(ccci_sandbox::deploy(info, &deploy))
        .unwrap_or_else(|e| panic!("deploy: {e}"));
}

#[test]
#[serial_test::file_serial(sandbox)]
fn timer_is_enabled_and_active_with_a_next_elapse() {
    redeploy();
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
    // OnCalendar=daily, as systemd normalises it
    assert!(props.contains("OnCalendar=*-*-* 00:00:00"), "{props}");
    let next = props
        .lines()
        .find_map(|l| l.strip_prefix("NextElapseUSecRealtime="))
        .unwrap_or("");
    assert!(!next.is_empty() && next != "0", "no next elapse: {props}");
    // the unit is never called docker-prune (NixOS reserves that name)
    let legacy = host_ok(&[
        "systemctl",
        "show",
        "docker-prune.timer",
        "-p",
        "LoadState",
        "--value",
    ]);
    assert_eq!(legacy, "not-found");
}

#[test]
#[serial_test::file_serial(sandbox)]
fn starting_the_service_logs_its_decision_to_the_journal() {
    redeploy();
    let unit = host_ok(&["systemctl", "cat", "ci-docker-prune.service"]);
    assert!(
        unit.contains("ExecStart=/usr/local/bin/ci-docker-prune --threshold 80"),
        "{unit}"
    );
    // As installed: a daily run below the threshold keeps the cache.
    let since = host_now();
    host_ok(&["systemctl", "start", "ci-docker-prune.service"]);
    let result = host_ok(&[
        "systemctl",
        "show",
        "ci-docker-prune.service",
        "-p",
        "Result",
        "--value",
    ]);
    assert_eq!(result, "success");
    // The decision names the fullest filesystem the daemon writes to first: `/` (the unit's
    // `--path`) on a legacy store; on the containerd store it may be the containerd root or the
    // data-root, and `/` is then among the others inside the parentheses. `/` is always measured.
    let log = journal_since(&since, "% (");
    let re = regex::Regex::new(
        r"ci-docker-prune: (/ at \d+% \((<|≥) 80%[);]|/\S+ at \d+% \((<|≥) 80%; (\S+ at \d+%, )*/ at \d+%)",
    )
    .unwrap();
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
    let since = host_now();
    let (code, out) = host(&["systemctl", "start", "ci-docker-prune.service"]);
    host_ok(&["rm", "-rf", dropin_dir]);
    host_ok(&["systemctl", "daemon-reload"]);
    let log = journal_since(&since, "ci-docker-prune: dry run");
    assert_eq!(code, 0, "forced run failed: {out}\n{log}");
    assert!(log.contains("no live run stack"), "{log}");
    assert!(log.contains("services converged"), "{log}");
    assert!(
        log.contains("ci-docker-prune: dry run, would remove"),
        "{log}"
    );
}

/// Puts the stand-in `docker.service` back on drop, whatever the test did.
struct StartDockerOnDrop;

impl Drop for StartDockerOnDrop {
    fn drop(&mut self) {
        let _ = host(&["systemctl", "start", "docker.service"]);
    }
}

/// Issue 11 item 5: the service is ordered after `docker.service` but never pulls it up. A
/// deliberately stopped Docker stays stopped through a timer run below the threshold (with
/// `Requires=docker.service`, starting the prune started Docker).
#[test]
#[serial_test::file_serial(sandbox)]
fn a_run_below_the_threshold_leaves_a_stopped_docker_stopped() {
    redeploy();
    let _restore = StartDockerOnDrop;
    let show = |p: &str| {
        host_ok(&[
            "systemctl",
            "show",
            "ci-docker-prune.service",
            "-p",
            p,
            "--value",
        ])
    };
    assert!(show("After")
        .split_whitespace()
        .any(|u| u == "docker.service"));
    for p in ["Requires", "Wants", "BindsTo", "Requisite"] {
        assert!(
            !show(p).split_whitespace().any(|u| u == "docker.service"),
            "{p}={}",
            show(p)
        );
    }
    host_ok(&["systemctl", "stop", "docker.service"]);
    let state = || host(&["systemctl", "is-active", "docker.service"]).1;
    assert_eq!(state().trim(), "inactive", "precondition: Docker stopped");
    let since = host_now();
    host_ok(&["systemctl", "start", "ci-docker-prune.service"]);
    assert_eq!(show("Result"), "success");
    let log = journal_since(&since, "keeping local image cache");
    assert!(log.contains("keeping local image cache"), "{log}");
    assert_eq!(
        state().trim(),
        "inactive",
        "the prune started a deliberately stopped Docker"
    );
}

/// Issue 21: the runbook's Debian recipe — `--metrics-file` in a drop-in plus
/// `ReadWritePaths=-DIR` — makes the hardened unit write node_exporter's textfile (mode 0644
/// despite `UMask=0077`, so node_exporter's user can read it) and its counters under the state
/// directory; without `ReadWritePaths` (`ProtectSystem=strict`) the run still succeeds and
/// says in the journal that it cannot write the file.
#[test]
#[serial_test::file_serial(sandbox)]
fn the_hardened_unit_writes_the_metrics_file_where_the_runbook_says() {
    redeploy();
    let dir = "/var/lib/prometheus/node-exporter";
    let file = format!("{dir}/ci-docker-prune.prom");
    host_ok(&["mkdir", "-p", dir]);
    host_ok(&["rm", "-f", &file, "/var/lib/ci-docker-prune/metrics.json"]);
    let dropin_dir = "/run/systemd/system/ci-docker-prune.service.d";
    let run_with = |rw: &str| {
        host_ok(&["mkdir", "-p", dropin_dir]);
        let conf = format!(
            "[Service]\nExecStart=\nExecStart=/usr/local/bin/ci-docker-prune --threshold 80 --path / --metrics-file {file}\n{rw}"
        );
        host_ok(&[
            "sh",
            "-c",
            &format!("printf '%s' '{conf}' > {dropin_dir}/ccci-test.conf"),
        ]);
        host_ok(&["systemctl", "daemon-reload"]);
        let since = host_now();
        let (code, out) = host(&["systemctl", "start", "ci-docker-prune.service"]);
        host_ok(&["rm", "-rf", dropin_dir]);
        host_ok(&["systemctl", "daemon-reload"]);
        assert_eq!(code, 0, "the run failed: {out}");
        since
    };
    // without ReadWritePaths: read-only under ProtectSystem=strict
    let since = run_with("");
    let log = journal_since(&since, "cannot write metrics file");
    assert!(
        log.contains(&format!("cannot write metrics file {file}")),
        "{log}"
    );
    assert_eq!(
        host(&["test", "-e", &file]).0,
        1,
        "written through a read-only /var"
    );
    // with it: the file, 0644, and the counters in the state directory
    run_with(&format!("ReadWritePaths=-{dir}\n"));
    let text = host_ok(&["cat", &file]);
    // two runs counted: the one that could not write the file saved its counters in the
    // state directory all the same
    let runs: f64 = text
        .lines()
        .filter(|l| l.starts_with("ci_docker_prune_runs_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(runs, 2.0, "{text}");
    assert_eq!(host_ok(&["stat", "-c", "%a", &file]), "644");
    host_ok(&["test", "-s", "/var/lib/ci-docker-prune/metrics.json"]);
    // no temporary file left beside it
    assert_eq!(host_ok(&["ls", "-A", dir]), "ci-docker-prune.prom");
    host_ok(&["rm", "-rf", "/var/lib/prometheus"]);
}
