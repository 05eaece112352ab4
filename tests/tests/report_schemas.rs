//! `docs/schema/*.json` (issue 21, item 4): the reports the code builds validate (the suites
//! validate every report they parse, see `ccci_tests::schema`), and a report missing a
//! required field, or with a value the contract does not have, does not.

use ccci_tests::schema::{assert_valid, errors, GATE_REPORT, PRUNE_REPORT};
use ci_docker_prune::gates::{Gate, GateDecision};
use ci_docker_prune::plan::ImageReason;
use ci_docker_prune::report::{
    CacheReport, DiskReport, Failure, Incident, Outcome, RemovedImage, Report,
};
use ci_docker_prune::Step;
use serde_json::{json, Value};

fn full_prune_report() -> Report {
    let mut r = Report::new(
        Outcome::Pruned,
        vec![GateDecision {
            gate: Gate::Disk,
            pass: true,
            detail: "/ at 85% (≥ 80%)".into(),
        }],
    );
    r.removed.images = vec!["sha256:a".into(), "sha256:b".into(), "sha256:c".into()];
    r.image_reasons = vec![
        RemovedImage {
            id: "sha256:a".into(),
            reason: ImageReason::BuildLeftover,
            bytes: 10,
        },
        RemovedImage {
            id: "sha256:b".into(),
            reason: ImageReason::SupersededPull {
                repo: "redis".into(),
            },
            bytes: 0,
        },
        RemovedImage {
            id: "sha256:c".into(),
            reason: ImageReason::LeastRecentlyUsed {
                repo: "library/redis".into(),
                last_used: 5,
            },
            bytes: 7,
        },
    ];
    r.failures.push(Failure {
        step: Step::Evict,
        id: "sha256:d".into(),
        error: "boom".into(),
    });
    r.incidents.push(Incident {
        image: "sha256:e".into(),
        untagged: vec!["app:1".into()],
    });
    r.disks = vec![DiskReport {
        path: "/".into(),
        used_bytes: 1,
        avail_bytes: 2,
        percent: 34,
    }];
    r.cache = Some(CacheReport {
        images: 1,
        bytes: 2,
    });
    r.evict_queue = Some(3);
    r.settle()
}

fn json_of(r: &Report) -> Value {
    serde_json::from_str(&r.to_json()).unwrap()
}

#[test]
fn the_prune_reports_the_code_builds_validate() {
    assert_valid(PRUNE_REPORT, &json_of(&full_prune_report()));
    assert_valid(PRUNE_REPORT, &json_of(&Report::failed("invalid threshold")));
    let mut skipped = Report::new(Outcome::Skipped, Vec::new());
    skipped.skipped_by = Some(Gate::Runs);
    assert_valid(PRUNE_REPORT, &json_of(&skipped));
    assert_valid(
        PRUNE_REPORT,
        &json_of(&Report::new(Outcome::DryRun, Vec::new())),
    );
}

#[test]
fn a_prune_report_missing_a_required_field_does_not_validate() {
    let full = json_of(&full_prune_report());
    let required = [
        "version",
        "outcome",
        "skipped_by",
        "gates",
        "removed",
        "reclaimed_bytes",
        "error",
        "failures",
        "incidents",
    ];
    for key in required {
        let mut v = full.clone();
        v.as_object_mut().unwrap().remove(key);
        assert!(
            !errors(PRUNE_REPORT, &v).is_empty(),
            "valid without {key}: {v}"
        );
    }
    // nested required fields, values the contract does not have, and a field it does not know
    let bad: [(&str, Value); 10] = [
        ("/removed", json!({"containers": [], "images": []})),
        ("/gates/0", json!({"gate": "disk", "pass": true})),
        ("/gates/0/gate", json!("memory")),
        ("/outcome", json!("done")),
        ("/version", json!(2)),
        ("/reclaimed_bytes", json!(-1)),
        (
            "/image_reasons/0/reason",
            json!({"kind": "least_recently_used"}),
        ),
        (
            "/image_reasons/0",
            json!({"id": "sha256:a", "reason": {"kind": "build_leftover"}}),
        ),
        ("/disks/0/percent", json!(101)),
        ("/cache", json!({"images": 1})),
    ];
    for (pointer, value) in bad {
        let mut v = full.clone();
        *v.pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{pointer} in {full}")) = value.clone();
        assert!(
            !errors(PRUNE_REPORT, &v).is_empty(),
            "valid with {pointer} = {value}"
        );
    }
    let mut v = full.clone();
    v["surprise"] = json!(1);
    assert!(!errors(PRUNE_REPORT, &v).is_empty());
    // an error outcome says why; another outcome has no error
    let mut v = full.clone();
    v["error"] = Value::Null;
    assert!(
        !errors(PRUNE_REPORT, &v).is_empty(),
        "error outcome without error"
    );
    let mut v = json_of(&Report::new(Outcome::Pruned, Vec::new()));
    v["error"] = json!("x");
    assert!(!errors(PRUNE_REPORT, &v).is_empty(), "pruned with an error");
    // skipped names its gate
    let mut v = json_of(&Report::new(Outcome::Skipped, Vec::new()));
    v["skipped_by"] = Value::Null;
    assert!(!errors(PRUNE_REPORT, &v).is_empty(), "skipped by nothing");
}

fn gate_report() -> Value {
    json!({
        "version": 1,
        "gate": "2pc",
        "target": "sandbox",
        "rev": "0123456789abcdef0123456789abcdef01234567",
        "checks": [
            {"id": "units.legacy-timer-absent", "title": "docker-prune.timer is gone",
             "verdict": "pass", "blocking": true, "duration_ms": 12, "detail": "LoadState=not-found",
             "evidence": [{"command": "systemctl show docker-prune.timer", "exit": 0, "output": "LoadState=not-found"},
                          {"command": "GET /info", "exit": null, "output": "{}"}]}
        ],
        "summary": {"pass": 1, "fail": 0, "error": 0, "skip": 0}
    })
}

#[test]
fn a_gate_report_missing_a_required_field_does_not_validate() {
    let full = gate_report();
    assert_valid(GATE_REPORT, &full);
    for key in ["version", "gate", "target", "rev", "checks", "summary"] {
        let mut v = full.clone();
        v.as_object_mut().unwrap().remove(key);
        assert!(!errors(GATE_REPORT, &v).is_empty(), "valid without {key}");
    }
    for key in [
        "id",
        "title",
        "verdict",
        "blocking",
        "duration_ms",
        "detail",
        "evidence",
    ] {
        let mut v = full.clone();
        v["checks"][0].as_object_mut().unwrap().remove(key);
        assert!(
            !errors(GATE_REPORT, &v).is_empty(),
            "valid without checks[0].{key}"
        );
    }
    for key in ["command", "exit", "output"] {
        let mut v = full.clone();
        v["checks"][0]["evidence"][0]
            .as_object_mut()
            .unwrap()
            .remove(key);
        assert!(
            !errors(GATE_REPORT, &v).is_empty(),
            "valid without evidence.{key}"
        );
    }
    let mut v = full.clone();
    v["checks"][0]["verdict"] = json!("ok");
    assert!(!errors(GATE_REPORT, &v).is_empty());
    let mut v = full.clone();
    v["summary"].as_object_mut().unwrap().remove("skip");
    assert!(!errors(GATE_REPORT, &v).is_empty());
}

/// The gate's own report type, serialised as the CLI prints it, validates.
#[test]
fn the_gate_report_type_validates() {
    use ccci_core::check::{Evidence, Verdict};
    use ccci_core::report::CheckResult;
    let r = ccci_core::Report::new(
        "2pc",
        "ssh://ci@host:2222",
        "0123456789abcdef0123456789abcdef01234567",
        vec![CheckResult {
            id: "auth.daemon-authenticated".into(),
            title: "credentials".into(),
            verdict: Verdict::Skip,
            blocking: false,
            duration_ms: 1,
            detail: "not applicable".into(),
            evidence: vec![Evidence::new(
                "stat -c %a /root/.docker/config.json",
                Some(0),
                "600",
            )],
        }],
    );
    let v: Value = serde_json::from_str(&ccci_core::render::json(&r)).unwrap();
    assert_valid(GATE_REPORT, &v);
}
