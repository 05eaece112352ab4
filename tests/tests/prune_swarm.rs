//! `ci-docker-prune` on the nodes of a real two-node swarm (issue 11, item 3): two daemons in
//! two network namespaces, joined (`prune_common::swarm`). Only a node that is not part of a
//! swarm has no services; a worker cannot list the swarm's services and skips (fail closed),
//! naming a run-stack task it runs itself; a swarm with no leader, or a locked one, closes the
//! gate with the daemon's message. Every run goes through the recording proxy: nothing but
//! GET requests when a gate closes.

mod prune_common;

use std::time::Duration;

use prune_common::swarm::{init_and_join, link, Node};
use prune_common::{prune_at, wait_for, Run, DAY, RUN_STACK_SERVICE};

/// `ci-docker-prune --dry-run --threshold 0 --json ARGS` against `node`, through the proxy.
fn prune_on(node: &Node, args: &[&str]) -> Run {
    let mut all = vec!["--dry-run", "--threshold", "0", "--json"];
    all.extend_from_slice(args);
    prune_at(&node.socket(), &node.tagged_image_ids(), &all, |_| {})
}

/// The `runs` gate of a run: (pass, detail).
fn runs_gate(run: &Run) -> (bool, String) {
    let j = run.json();
    let g = j["gates"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["gate"] == "runs"))
        .unwrap_or_else(|| panic!("no runs gate: {j}"))
        .clone();
    (
        g["pass"].as_bool().unwrap_or(true),
        g["detail"].as_str().unwrap_or("").to_string(),
    )
}

/// Closed by `runs`, exit 0, and only GET requests were sent.
fn assert_skipped_by_runs(run: &Run) {
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["outcome"], "skipped", "{j}\n{}", run.stderr);
    assert_eq!(j["skipped_by"], "runs", "{j}");
    assert!(
        run.requests.iter().all(|r| r.method == "GET"),
        "{:?}",
        run.requests
    );
}

fn redis_stand_in() -> ccci_sandbox::images::ImageSpec {
    ccci_sandbox::fixture::redis_spec()
        .unwrap_or_else(|e| panic!("redis stand-in: {e}"))
        .tag("redis:7-alpine")
}

#[test]
#[serial_test::serial(prune_swarm)]
fn a_worker_fails_closed_and_names_a_run_stack_task_it_runs() {
    let manager = Node::start();
    let worker = Node::start();
    link(&manager, &worker);
    let leftover = worker.load(
        &ccci_sandbox::images::ImageSpec::unique_test_image(
            &prune_common::seed("swarm-leftover"),
            2,
            3 * DAY,
        )
        .unwrap_or_else(|e| panic!("test image: {e}")),
    );

    // Not part of any swarm yet: the one case where there are no services.
    let run = prune_on(&worker, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["outcome"], "dry-run", "{}", run.stderr);
    let (pass, detail) = runs_gate(&run);
    assert!(pass && detail.starts_with("no live run stack"), "{detail}");
    assert!(run.removed("images").contains(&leftover));

    init_and_join(&manager, &worker, "worker");
    assert_eq!(
        worker.docker_ok(&["info", "--format", "{{.Swarm.ControlAvailable}}"]),
        "false",
        "precondition: a worker"
    );

    // A worker with no task at all: it cannot rule out a run elsewhere in the swarm.
    let run = prune_on(&worker, &[]);
    assert_skipped_by_runs(&run);
    let (_, detail) = runs_gate(&run);
    assert!(
        detail.starts_with("swarm worker: only a manager can list the swarm's services")
            && detail.contains("0 swarm task(s) on this node"),
        "{detail}"
    );
    assert!(
        run.stderr.contains("never prune during a CI run"),
        "{}",
        run.stderr
    );

    // A CI run whose task runs on the worker (the measured case of the issue: before, the
    // worker said "no live run stack (0 of 0 services …)" and went on to prune).
    worker.load(&redis_stand_in());
    manager.docker_ok(&[
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--constraint",
        "node.role==worker",
        "--name",
        RUN_STACK_SERVICE,
        "redis:7-alpine",
    ]);
    let filter = format!("label=com.docker.swarm.service.name={RUN_STACK_SERVICE}");
    let running = wait_for(Duration::from_secs(90), || {
        !worker
            .docker_ok(&["ps", "-q", "--filter", &filter])
            .is_empty()
    });
    assert!(
        running,
        "the CI task never ran on the worker: {}",
        manager.docker_ok(&["service", "ps", "--no-trunc", RUN_STACK_SERVICE])
    );
    let run = prune_on(&worker, &[]);
    assert_skipped_by_runs(&run);
    let (_, detail) = runs_gate(&run);
    assert!(
        detail.starts_with(&format!(
            "run stack live on this swarm worker: {RUN_STACK_SERVICE} ("
        )),
        "{detail}"
    );
    // The manager sees the service itself.
    let run = prune_on(&manager, &[]);
    assert_skipped_by_runs(&run);
    let (_, detail) = runs_gate(&run);
    assert!(
        detail.starts_with(&format!("run stack live: {RUN_STACK_SERVICE} (1 of 1")),
        "{detail}"
    );
    // And a real (not dry) run on the worker removes nothing either.
    let run = prune_at(
        &worker.socket(),
        &worker.tagged_image_ids(),
        &[
            "--threshold",
            "0",
            "--until",
            "0s",
            "--run-stack-pattern",
            "^ccci-matches-nothing$",
            "--json",
        ],
        |_| {},
    );
    assert_skipped_by_runs(&run);
    assert!(worker.docker(&["image", "inspect", &leftover]).0);
}

#[test]
#[serial_test::serial(prune_swarm)]
fn a_node_outside_any_swarm_has_no_services() {
    let node = Node::start();
    let run = prune_on(&node, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["outcome"], "dry-run", "{}", run.stderr);
    assert_eq!(
        runs_gate(&run),
        (
            true,
            "no live run stack (not part of a swarm: no services)".into()
        )
    );
    assert!(
        run.stderr
            .contains("ci-docker-prune: nothing to converge (not part of a swarm)"),
        "{}",
        run.stderr
    );
    // one services call, its error answer read with one /info; no tasks call
    let count = |p: &str| run.requests.iter().filter(|r| r.path == p).count();
    assert_eq!(
        (count("/services"), count("/info"), count("/tasks")),
        (1, 1, 0)
    );
}

#[test]
#[serial_test::serial(prune_swarm)]
fn a_swarm_without_a_leader_fails_closed() {
    let manager = Node::start();
    let mut other = Node::start();
    link(&manager, &other);
    init_and_join(&manager, &other, "manager");
    // Two managers, one gone: no quorum, no leader. The daemon answers 500 "rpc error: …
    // The swarm does not have a leader" (measured), which the prune used to turn into exit 1.
    other.stop();
    let leaderless = wait_for(Duration::from_secs(90), || {
        let (ok, _, err) = manager.docker(&["service", "ls"]);
        !ok && err.contains("does not have a leader")
    });
    assert!(
        leaderless,
        "the swarm kept its leader with one of two managers"
    );
    let run = prune_on(&manager, &["--run-stack-pattern", "^ccci-matches-nothing$"]);
    assert_skipped_by_runs(&run);
    let (_, detail) = runs_gate(&run);
    assert!(
        detail.starts_with("swarm services cannot be listed")
            && detail.contains("The swarm does not have a leader"),
        "{detail}"
    );
}

#[test]
#[serial_test::serial(prune_swarm)]
fn a_locked_swarm_fails_closed() {
    let mut manager = Node::start();
    manager.docker_ok(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
    manager.docker_ok(&["swarm", "update", "--autolock=true"]);
    manager.restart();
    assert_eq!(
        manager.docker_ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"]),
        "locked",
        "precondition: a locked swarm"
    );
    // The daemon answers 503 "Swarm is encrypted and needs to be unlocked …" (measured),
    // which the prune used to read as "no services" (any 503 mentioning swarm).
    let run = prune_on(&manager, &["--run-stack-pattern", "^ccci-matches-nothing$"]);
    assert_skipped_by_runs(&run);
    let (_, detail) = runs_gate(&run);
    assert!(
        detail.contains("Swarm is encrypted and needs to be unlocked"),
        "{detail}"
    );
}
