//! Issue 17, item 2: the `converge` gate on a real daemon decides from task states that mean
//! work in flight. Settled services — a completed one-shot (restart condition `none`), exit 0
//! under `on-failure`, a service no node can take, a service whose image cannot be pulled —
//! never hold it; a task being started (waiting for its healthcheck) and an update in progress
//! do. Before the fix, each settled service alone closed the gate ("oneshot 0/1 tasks running")
//! and the prune skipped every day while the disk filled.

mod prune_common;

use std::time::Duration;

use prune_common::*;

/// Create a service (detached); the caller's cleanup removes it.
fn service(clean: &mut Cleanup, name: &str, args: &[&str]) {
    let mut argv = vec!["service", "create", "-d", "--name", name];
    argv.extend_from_slice(args);
    docker_ok(&argv);
    clean.services.push(name.to_string());
}

/// `docker service ps` of `name`: one `desired state err` line per task (history included).
fn task_states(name: &str) -> Vec<String> {
    docker_ok(&[
        "service",
        "ps",
        "--no-trunc",
        "--format",
        "{{.DesiredState}}|{{.CurrentState}}|{{.Error}}",
        name,
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// The `converge` gate of a run: (pass, detail).
fn converge(run: &Run) -> (bool, String) {
    let j = run.json();
    let g = j["gates"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["gate"] == "converge"))
        .unwrap_or_else(|| panic!("no converge gate: {j}\n{}", run.stderr))
        .clone();
    (
        g["pass"].as_bool().unwrap_or(false),
        g["detail"].as_str().unwrap_or("").to_string(),
    )
}

fn open_dry_run() -> Run {
    prune(&[
        "--threshold",
        "0",
        "--until",
        "0s",
        "--run-stack-pattern",
        NO_RUN_PATTERN,
        "--dry-run",
        "--json",
    ])
}

#[test]
#[serial_test::file_serial(sandbox)]
fn settled_services_never_hold_the_converge_gate() {
    let s = seed("settled");
    let mut clean = Cleanup::default();
    let leftover = load_image(&s, 3 * DAY, None);
    clean.images.push(leftover.clone());
    let oneshot = format!("ccci-oneshot-{s}");
    let onfail = format!("ccci-onfail0-{s}");
    let unplaceable = format!("ccci-unplaceable-{s}");
    let pullfail = format!("ccci-pullfail-{s}");
    // swarm resolves the tag to a digest and pins it, as a CI deploy does (no tag is left)
    service(
        &mut clean,
        &oneshot,
        &[
            "--restart-condition",
            "none",
            "redis:7-alpine",
            "sh",
            "-c",
            "exit 0",
        ],
    );
    service(
        &mut clean,
        &onfail,
        &[
            "--restart-condition",
            "on-failure",
            "redis:7-alpine",
            "sh",
            "-c",
            "exit 0",
        ],
    );
    service(
        &mut clean,
        &unplaceable,
        &[
            "--constraint",
            "node.labels.ccci-never==true",
            "redis:7-alpine",
        ],
    );
    service(
        &mut clean,
        &pullfail,
        &[
            "--no-resolve-image",
            &format!("127.0.0.1:5000/ccci-test/never-pushed-{s}:1"),
        ],
    );
    // Settled as the daemon shows them: both one-shots complete, no task wanted running.
    for name in [&oneshot, &onfail] {
        let done = wait_for(Duration::from_secs(120), || {
            task_states(name)
                .iter()
                .any(|l| l.starts_with("Shutdown|Complete"))
        });
        assert!(done, "{name} did not complete: {:?}", task_states(name));
    }
    let pending = wait_for(Duration::from_secs(60), || {
        task_states(&unplaceable)
            .iter()
            .any(|l| l.starts_with("Running|Pending") && l.contains("no suitable node"))
    });
    assert!(pending, "precondition: {:?}", task_states(&unplaceable));
    let rejected = wait_for(Duration::from_secs(60), || {
        task_states(&pullfail)
            .iter()
            .filter(|l| l.contains("|Rejected") && l.contains("No such image"))
            .count()
            >= 2
    });
    assert!(
        rejected,
        "precondition: the pull fails: {:?}",
        task_states(&pullfail)
    );

    let run = open_dry_run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    let (pass, detail) = converge(&run);
    assert!(
        pass,
        "a settled service held the converge gate: {detail}\n{}",
        run.stderr
    );
    assert_eq!(j["outcome"], "dry-run", "{j}");
    assert!(
        detail.contains(&format!("{unplaceable} task 1 pending: no suitable node")),
        "{detail}"
    );
    assert!(run.removed("images").contains(&leftover), "{j}");
    let count = |p: &str| run.requests.iter().filter(|r| r.path == p).count();
    assert_eq!((count("/services"), count("/tasks")), (1, 1));

    // A task being started (its healthcheck has not passed: it stays `starting` for the
    // start period) is work in flight: closed, and it says which.
    let health = format!("ccci-starting-{s}");
    service(
        &mut clean,
        &health,
        &[
            "--health-cmd",
            "false",
            "--health-start-period",
            "1h",
            "--health-interval",
            "1h",
            "redis:7-alpine",
        ],
    );
    let starting = wait_for(Duration::from_secs(120), || {
        task_states(&health)
            .iter()
            .any(|l| l.starts_with("Running|Starting"))
    });
    assert!(starting, "precondition: {:?}", task_states(&health));
    let run = open_dry_run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["skipped_by"], "converge", "{}", run.stderr);
    assert_eq!(
        converge(&run),
        (
            false,
            format!("service converging: {health} task 1 starting")
        )
    );
    assert!(
        run.stderr
            .contains("— a deploy may be pulling, nothing to do"),
        "{}",
        run.stderr
    );
    remove_service(&health);

    // An update in progress (the second task waits for the update delay) holds it too.
    let updating = format!("ccci-updating-{s}");
    service(
        &mut clean,
        &updating,
        &["--replicas", "2", "redis:7-alpine"],
    );
    let up = wait_for(Duration::from_secs(120), || {
        docker_ok(&[
            "service",
            "ls",
            "--filter",
            &format!("name={updating}"),
            "--format",
            "{{.Replicas}}",
        ]) == "2/2"
    });
    assert!(up, "precondition: {:?}", task_states(&updating));
    docker_ok(&[
        "service",
        "update",
        "-d",
        "--update-parallelism",
        "1",
        "--update-delay",
        "1h",
        "--env-add",
        "CCCI_UPDATE=1",
        &updating,
    ]);
    let in_progress = wait_for(Duration::from_secs(60), || {
        docker_ok(&[
            "service",
            "inspect",
            "--format",
            "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
            &updating,
        ]) == "updating"
    });
    assert!(in_progress, "precondition: an update in progress");
    let run = open_dry_run();
    assert_eq!(run.json()["skipped_by"], "converge", "{}", run.stderr);
    let (_, detail) = converge(&run);
    assert!(
        detail.contains(&format!("{updating} update in progress (updating)")),
        "{detail}"
    );
    for name in [&oneshot, &onfail, &unplaceable, &pullfail, &updating] {
        remove_service(name);
    }
}

/// Item 2, second half: a gate that keeps the prune from acting while the disk is over the
/// threshold is remembered in the state directory across runs, warned about once it lasted
/// `--gate-stall-warn-after`, and reported in the JSON (`stalled`, additive). A dry run reads
/// the record and writes none; a run below the threshold ends it.
#[test]
#[serial_test::file_serial(sandbox)]
fn a_gate_closed_under_pressure_for_too_long_is_warned() {
    let s = seed("stall");
    let mut clean = Cleanup::default();
    let health = format!("ccci-stall-{s}");
    service(
        &mut clean,
        &health,
        &[
            "--health-cmd",
            "false",
            "--health-start-period",
            "1h",
            "--health-interval",
            "1h",
            "redis:7-alpine",
        ],
    );
    let starting = wait_for(Duration::from_secs(120), || {
        task_states(&health)
            .iter()
            .any(|l| l.starts_with("Running|Starting"))
    });
    assert!(starting, "precondition: {:?}", task_states(&health));
    let dir = tempfile::tempdir().unwrap();
    let run = |threshold: &str, dry: bool| {
        let mut args = vec![
            "--threshold",
            threshold,
            "--until",
            "3000d",
            "--no-evict",
            "--run-stack-pattern",
            NO_RUN_PATTERN,
            "--gate-stall-warn-after",
            "2s",
            "--json",
        ];
        if dry {
            args.push("--dry-run");
        }
        let r = prune_with_state_dir(&args, dir.path());
        assert_eq!(r.code, 0, "{}", r.stderr);
        r
    };
    let stalled = |r: &Run| r.json()["stalled"].clone();

    let first = run("0", false);
    assert_eq!(first.json()["skipped_by"], "converge", "{}", first.stderr);
    assert!(stalled(&first).is_null(), "{}", first.stdout);
    assert!(!first.stderr.contains("WARNING"), "{}", first.stderr);
    std::thread::sleep(Duration::from_secs(3));
    let second = run("0", false);
    let st = stalled(&second);
    assert_eq!(st["gate"], "converge", "{}", second.stdout);
    assert_eq!(st["runs"], 2, "{st}");
    assert!(st["seconds"].as_u64().is_some_and(|s| s >= 3), "{st}");
    assert!(
        second
            .stderr
            .contains("ci-docker-prune: WARNING: the disk has been over the threshold for ")
            && second.stderr.contains("(2 run(s) since "),
        "{}",
        second.stderr
    );
    assert!(
        second.stderr.contains(&format!(
            "kept the prune from acting: service converging: {health} task 1 starting"
        )),
        "{}",
        second.stderr
    );
    // a dry run reports it and remembers nothing: the next real run counts 3, not 4
    assert_eq!(stalled(&run("0", true))["runs"], 3);
    assert_eq!(stalled(&run("0", false))["runs"], 3);
    // below the threshold the stall ends; the next gated run starts a new one
    let calm = run("100", false);
    assert_eq!(calm.json()["skipped_by"], "disk", "{}", calm.stdout);
    assert!(stalled(&calm).is_null(), "{}", calm.stdout);
    assert!(stalled(&run("0", false)).is_null());
    remove_service(&health);
}
