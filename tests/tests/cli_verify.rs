//! The `ccci-verify` command line as a reviewer meets it: exit codes 0/1/2/3, spec errors that
//! name the file and key, the JSON report of the contract (DESIGN.md), the JUnit and Markdown
//! renderings, `--output`, `checks`, `sandbox status --json`, and insta snapshots of the
//! human and Markdown reports (redacted: durations, shas, ids, systemd times).
//!
//! The binary is `<target>/debug/ccci-verify` (see `verify_cli/mod.rs`); build it first with
//! `cargo build --workspace --bins`. Tests that run checks against the shared sandbox take the
//! sandbox lock: the gate's probe and prune run change its state, and a snapshot needs the
//! host in its deployed state, not in another test's wrong state.

mod verify_cli;

use ccci_tests::{sandbox, workspace_root};
use serde_json::Value;
use std::collections::BTreeSet;
use verify_cli::{assert_no_secret, run, verify};

/// The check ids of gate `2pc`, in DESIGN.md's table (a contract: stable ids).
const DESIGN_IDS: &[&str] = &[
    "units.legacy-timer-absent",
    "units.prune-timer-active",
    "units.prune-service-loaded",
    "prune.noop-below-threshold",
    "prune.never-all-never-volumes",
    "prune.keeps-deployed-images",
    "cache.image-survives-teardown",
    "cache.warm-redeploy-zero-layers",
    "auth.daemon-authenticated",
    "store.docker-root-persistent",
    "repro.units-git-eq-host",
    "repro.files-git-eq-host",
    "repro.docs-reference-declared-units",
    "repro.unit-config-git-eq-host",
    "repro.system-git-eq-host",
    "prune.no-other-pruner",
    // issue 18 item 2 (new): the running program tied to git (docs/checks.md)
    "repro.program-git-eq-host",
];

const UNIT_CHECKS: &[&str] = &[
    "units.legacy-timer-absent",
    "units.prune-timer-active",
    "units.prune-service-loaded",
];

/// The checks of gate 2pc that do not apply to the sandbox's host (off NixOS, the system
/// check is a non-blocking skip).
fn not_applicable() -> Vec<&'static str> {
    if sandbox().shape.flavour == ccci_tests::ccci_sandbox::Flavour::Nixos {
        vec![]
    } else {
        vec!["repro.system-git-eq-host"]
    }
}

/// The built-in gate's checks in spec order (the order of the report).
fn spec_ids() -> Vec<String> {
    ccci_tests::gate::builtin_spec("2pc")
        .checks
        .iter()
        .map(|c| c.id.clone())
        .collect()
}

fn head() -> String {
    ccci_nix::GitRepo::open(&workspace_root())
        .and_then(|g| g.resolve("HEAD"))
        .unwrap_or_else(|e| panic!("git HEAD of the workspace: {e}"))
}

fn is_sha(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn set(items: &[&'static str]) -> BTreeSet<&'static str> {
    items.iter().copied().collect()
}

/// The JSON report of the contract, field by field and type by type; returns the checks by id.
fn assert_contract(text: &str, gate: &str, target: &str, rev: &str) -> Value {
    let v: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("the report is not JSON: {e}\n{text}"));
    ccci_tests::schema::assert_valid(ccci_tests::schema::GATE_REPORT, &v);
    assert_eq!(
        keys(&v),
        set(&["version", "gate", "target", "rev", "checks", "summary"]),
        "top-level keys"
    );
    assert_eq!(v["version"], 1);
    assert_eq!(v["gate"], gate);
    assert_eq!(v["target"], target);
    let r = v["rev"].as_str().expect("rev is a string");
    assert!(is_sha(r), "rev `{r}` is not a 40-hex sha");
    assert_eq!(r, rev);
    let checks = v["checks"].as_array().expect("checks is an array");
    assert!(!checks.is_empty());
    let mut counted = std::collections::BTreeMap::<String, u64>::new();
    for c in checks {
        let id = c["id"].as_str().expect("id is a string");
        assert_eq!(
            keys(c),
            set(&[
                "id",
                "title",
                "verdict",
                "blocking",
                "duration_ms",
                "detail",
                "evidence"
            ]),
            "keys of check {id}"
        );
        assert!(
            c["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{id}: title"
        );
        let verdict = c["verdict"].as_str().expect("verdict is a string");
        assert!(
            ["pass", "fail", "error", "skip"].contains(&verdict),
            "{id}: verdict {verdict}"
        );
        *counted.entry(verdict.to_string()).or_default() += 1;
        assert!(c["blocking"].is_boolean(), "{id}: blocking");
        assert!(c["duration_ms"].is_u64(), "{id}: duration_ms");
        assert!(
            c["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{id}: detail"
        );
        let evidence = c["evidence"].as_array().expect("evidence is an array");
        assert!(!evidence.is_empty(), "{id} carries no evidence");
        for e in evidence {
            assert_eq!(
                keys(e),
                set(&["command", "exit", "output"]),
                "{id}: evidence keys"
            );
            assert!(
                e["command"].as_str().is_some_and(|c| !c.is_empty()),
                "{id}: evidence command"
            );
            assert!(
                e["exit"].is_null() || e["exit"].is_i64(),
                "{id}: evidence exit {}",
                e["exit"]
            );
            assert!(e["output"].is_string(), "{id}: evidence output");
        }
    }
    let summary = &v["summary"];
    assert_eq!(keys(summary), set(&["pass", "fail", "error", "skip"]));
    for k in ["pass", "fail", "error", "skip"] {
        assert_eq!(
            summary[k].as_u64(),
            Some(counted.get(k).copied().unwrap_or(0)),
            "summary.{k} does not count the checks"
        );
    }
    v
}

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("{id} is not in the report"))
}

fn ids(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| c["id"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// exit 2: usage and spec errors (no target is contacted)

#[test]
fn usage_errors_exit_2_with_the_reason() {
    let cases: &[(&[&str], &str)] = &[
        (&["gate", "nope"], "unknown gate `nope`"),
        (&["gate", "2pc", "--format", "xml"], "unknown format `xml`"),
        (
            &["gate", "2pc", "--target", "ssh://"],
            "invalid target `ssh://`",
        ),
        (
            &["gate", "2pc", "--target", "ssh://-oProxyCommand=x"],
            "invalid target",
        ),
        (
            &["gate", "2pc", "--target", "ftp://x"],
            "invalid target `ftp://x`",
        ),
        (
            &["gate", "2pc", "--target", "docker://a;b"],
            "invalid target `docker://a;b`",
        ),
        (
            &["gate", "2pc", "--check", "no.such"],
            "check `no.such` is not in gate `2pc`",
        ),
        (&["gate", "2pc", "--no-such-flag"], "--no-such-flag"),
        (
            &["gate", "2pc", "--output", "/nonexistent/ccci/report.json"],
            "--output /nonexistent/ccci/report.json",
        ),
        (&["gate"], "<GATE>"),
        (&["checks", "nope"], "unknown gate `nope`"),
        (&["frobnicate"], "frobnicate"),
    ];
    for (args, needle) in cases {
        let r = run(verify().args(*args));
        assert_eq!(
            r.code,
            Some(2),
            "ccci-verify {}: {}",
            args.join(" "),
            r.show()
        );
        assert!(
            r.stderr.contains(needle),
            "ccci-verify {}: stderr lacks `{needle}`: {}",
            args.join(" "),
            r.show()
        );
        assert!(
            r.stdout.is_empty(),
            "a usage error prints no report: {}",
            r.show()
        );
    }
}

#[test]
fn bad_spec_files_exit_2_naming_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let good_check = "[[checks]]\nid = \"units.legacy-timer-absent\"\n";
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "unknown-key.toml",
            format!("version = 1\ngate = \"x\"\nbogus = 1\n{good_check}"),
            &["unknown field `bogus`"],
        ),
        (
            "unknown-check-key.toml",
            "version = 1\ngate = \"x\"\n[[checks]]\nid = \"units.legacy-timer-absent\"\ntimeout = 3\n"
                .to_string(),
            &["unknown field `timeout`", "timeout_secs"],
        ),
        (
            "missing-checks.toml",
            "version = 1\ngate = \"x\"\n".to_string(),
            &["missing field `checks`"],
        ),
        (
            "empty-checks.toml",
            "version = 1\ngate = \"x\"\nchecks = []\n".to_string(),
            &["[[checks]]"],
        ),
        (
            "unknown-id.toml",
            "version = 1\ngate = \"x\"\n[[checks]]\nid = \"no.such-check\"\n".to_string(),
            &["unknown check id `no.such-check`", "[[checks]] id"],
        ),
        (
            "twice.toml",
            format!("version = 1\ngate = \"x\"\n{good_check}{good_check}"),
            &["units.legacy-timer-absent", "twice"],
        ),
        (
            "version.toml",
            format!("version = 2\ngate = \"x\"\n{good_check}"),
            &["version 2"],
        ),
        (
            "zero-timeout.toml",
            format!("version = 1\ngate = \"x\"\n{good_check}timeout_secs = 0\n"),
            &["timeout_secs"],
        ),
        (
            "not-toml.toml",
            "version = = 1\n".to_string(),
            &["TOML parse error"],
        ),
        (
            "bad-param-value.toml",
            format!("version = 1\ngate = \"x\"\n{good_check}[params]\nthreshold = \"lots\"\n"),
            &["threshold", "\"lots\""],
        ),
        (
            "unknown-param.toml",
            format!("version = 1\ngate = \"x\"\n{good_check}[params.auth]\nexpectd_user = \"x\"\n"),
            &["unknown field `expectd_user`", "auth"],
        ),
        (
            // an override for another kind of target is checked on every run
            "bad-ssh-override.toml",
            format!("version = 1\ngate = \"x\"\n{good_check}[targets.ssh.params]\nthreshold = 101.5\n"),
            &["[targets.\"ssh\".params]", "threshold"],
        ),
        (
            "bad-full-target-override.toml",
            format!("version = 1\ngate = \"x\"\n{good_check}[targets.\"ssh://root@cc-ci\".params.store]\ndocker_rot = \"/x\"\n"),
            &["[targets.\"ssh://root@cc-ci\".params]", "unknown field `docker_rot`"],
        ),
        (
            "misspelt-target.toml",
            format!("version = 1\ngate = \"x\"\n{good_check}[targets.sanbox.params]\nthreshold = 3\n"),
            &["[targets.\"sanbox\"]", "names no target"],
        ),
        (
            "bad-target-override.toml",
            format!("version = 1\ngate = \"x\"\n{good_check}[targets.sandbox]\nparam = 1\n"),
            &["unknown field `param`"],
        ),
    ];
    for (name, text, needles) in &cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        for sub in [&["gate"][..], &["checks"][..]] {
            let r = run(verify().args(sub).arg(&path));
            assert_eq!(r.code, Some(2), "{name} ({}): {}", sub[0], r.show());
            assert!(
                r.stderr.contains(&path.display().to_string()),
                "{name} ({}): the message does not name the file: {}",
                sub[0],
                r.show()
            );
            for n in *needles {
                assert!(
                    r.stderr.contains(n),
                    "{name} ({}): the message lacks `{n}`: {}",
                    sub[0],
                    r.show()
                );
            }
        }
    }
    // a spec path that does not exist
    let missing = dir.path().join("missing.toml");
    let r = run(verify().arg("gate").arg(&missing));
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(r.stderr.contains("cannot read gate spec"), "{}", r.show());
    assert!(
        r.stderr.contains(&missing.display().to_string()),
        "{}",
        r.show()
    );
}

#[test]
fn bad_repo_or_rev_for_repro_checks_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(verify().args([
        "gate",
        "2pc",
        "--check",
        "repro.files-git-eq-host",
        "--repo",
        &dir.path().display().to_string(),
    ]));
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(r.stderr.contains("--repo"), "{}", r.show());
    let r = run(verify().args([
        "gate",
        "2pc",
        "--check",
        "repro.files-git-eq-host",
        "--rev",
        "no-such-branch-ccci",
    ]));
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(r.stderr.contains("no-such-branch-ccci"), "{}", r.show());
}

// ---------------------------------------------------------------------------------------------
// checks

#[test]
fn checks_lists_every_id_of_the_contract() {
    let all = run(verify().arg("checks"));
    assert_eq!(all.code, Some(0), "{}", all.show());
    let gate = run(verify().args(["checks", "2pc"]));
    assert_eq!(gate.code, Some(0), "{}", gate.show());
    for id in DESIGN_IDS {
        for (what, r) in [("checks", &all), ("checks 2pc", &gate)] {
            assert!(
                r.stdout
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(id)),
                "`{what}` does not list {id}:\n{}",
                r.stdout
            );
        }
    }
    // and nothing else: the gate's listing is exactly the contract's ids
    let listed: BTreeSet<&str> = gate
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(listed, DESIGN_IDS.iter().copied().collect());
    assert!(all.stdout.contains("built-in gates: 2pc"), "{}", all.show());
    // a spec path works as well as the built-in name
    let by_path = run(verify()
        .arg("checks")
        .arg(workspace_root().join("verify/gates/2pc.toml")));
    assert_eq!(by_path.code, Some(0), "{}", by_path.show());
    assert_eq!(by_path.stdout, gate.stdout);
}

#[test]
fn checks_2pc_snapshot() {
    let r = run(verify().args(["checks", "2pc"]));
    assert_eq!(r.code, Some(0), "{}", r.show());
    insta::assert_snapshot!("checks_2pc", r.stdout);
}

// ---------------------------------------------------------------------------------------------
// sandbox status

#[test]
fn sandbox_status_json_says_how_to_reach_it() {
    let info = sandbox();
    let r = run(verify().args(["sandbox", "status", "--json"]));
    assert_eq!(r.code, Some(0), "{}", r.show());
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.show()));
    assert_eq!(v["running"], true);
    assert_eq!(v["docker_host"], info.docker_host.as_str());
    assert_eq!(v["registry"], info.registry.as_str());
    assert_eq!(v["auth_registry"], "127.0.0.1:5001");
    assert_eq!(v["host_container"], info.host_container.as_str());
    assert_eq!(
        v["data_root"],
        info.data_root.display().to_string().as_str()
    );
    // the socket it names is a live daemon socket
    let sock = v["docker_host"]
        .as_str()
        .and_then(|s| s.strip_prefix("unix://"))
        .expect("docker_host is unix://PATH");
    std::os::unix::net::UnixStream::connect(sock)
        .unwrap_or_else(|e| panic!("docker_host {sock} does not accept connections: {e}"));

    // a sandbox that does not run: exit 3 and `running: false`
    let r = run(verify()
        .args(["sandbox", "status", "--json"])
        .env("CCCI_SANDBOX_NAME", "ccci-cli-never-up"));
    assert_eq!(r.code, Some(3), "{}", r.show());
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.show()));
    assert_eq!(v["running"], false);
}

// ---------------------------------------------------------------------------------------------
// gate 2pc against the sandbox: exit 0 and each format

#[test]
#[serial_test::file_serial(sandbox)]
fn gate_2pc_passes_and_json_matches_the_contract() {
    // A sandbox a person (or a test) pulled the probe image into by tag: `sandbox up` makes it
    // a right host again (the image as a CI host has it: untagged), and the gate passes whole.
    // Without that, `prune.keeps-deployed-images` skips (a running sandbox is gated as it is).
    ccci_tests::gate::pull_probe_image_by_tag(sandbox());
    let up = run(verify().args(["sandbox", "up"]));
    assert_eq!(up.code, Some(0), "{}", up.show());
    let rev = head();
    let r = run(verify().args(["gate", "2pc", "--format", "json", "--rev", &rev]));
    assert_eq!(
        r.code,
        Some(0),
        "the gate does not pass on the sandbox: {}",
        r.show()
    );
    let v = assert_contract(&r.stdout, "2pc", "sandbox", &rev);
    assert_eq!(
        ids(&v),
        spec_ids(),
        "the report lists the gate's checks in spec order"
    );
    assert_eq!(
        ids(&v).iter().map(String::as_str).collect::<BTreeSet<_>>(),
        DESIGN_IDS.iter().copied().collect()
    );
    // off NixOS the system check does not apply: a skip, not blocking, with the reason
    let nixos = sandbox().shape.flavour == ccci_tests::ccci_sandbox::Flavour::Nixos;
    let mut passing = 0;
    for id in DESIGN_IDS {
        let c = check(&v, id);
        if *id == "repro.system-git-eq-host" && !nixos {
            assert_eq!(c["verdict"], "skip", "{id}: {c}");
            assert_eq!(c["blocking"], false, "{id}: {c}");
            assert!(
                c["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("not NixOS"),
                "{c}"
            );
            continue;
        }
        assert_eq!(c["verdict"], "pass", "{id}: {c}");
        assert_eq!(c["blocking"], true, "{id}");
        passing += 1;
    }
    assert_eq!(v["summary"]["pass"].as_u64(), Some(passing));
    // the store check ran against the sandbox daemon's own data-root
    let store = check(&v, "store.docker-root-persistent");
    assert!(
        store["evidence"][0]["output"]
            .as_str()
            .unwrap_or_default()
            .contains(&sandbox().data_root.display().to_string()),
        "{store}"
    );
}

#[test]
#[serial_test::file_serial(sandbox)]
fn gate_2pc_junit_to_output_file() {
    ccci_tests::gate::untag_probe_image_if_free(sandbox());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.xml");
    let r = run(verify()
        .args(["gate", "2pc", "--format", "junit", "--output"])
        .arg(&out));
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(
        r.stdout.is_empty(),
        "with --output nothing goes to stdout: {}",
        r.show()
    );
    let skipped = not_applicable();
    let summary = format!(
        "{} pass, 0 fail, 0 error, {} skip",
        DESIGN_IDS.len() - skipped.len(),
        skipped.len()
    );
    assert!(
        r.stderr.contains(&out.display().to_string()) && r.stderr.contains(&summary),
        "stderr says where the report is and its summary ({summary}): {}",
        r.show()
    );
    let xml = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    assert_no_secret("the JUnit report", &xml);
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(xml.contains("<testsuites"), "{xml}");
    assert!(
        xml.contains(&format!(r#"tests="{}""#, DESIGN_IDS.len())),
        "{xml}"
    );
    assert!(
        xml.contains(&format!(r#"skipped="{}""#, skipped.len())),
        "{xml}"
    );
    assert!(xml.contains(r#"failures="0""#), "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), DESIGN_IDS.len(), "{xml}");
    for id in DESIGN_IDS {
        assert!(
            xml.contains(&format!(r#"<testcase name="{id}""#)),
            "{id}: {xml}"
        );
    }
    assert!(!xml.contains("<failure"), "{xml}");
    assert!(!xml.contains("<error"), "{xml}");
}

#[test]
#[serial_test::file_serial(sandbox)]
fn gate_2pc_markdown_has_an_evidence_block_per_check() {
    ccci_tests::gate::untag_probe_image_if_free(sandbox());
    let rev = head();
    let r = run(verify().args(["gate", "2pc", "--format", "markdown", "--rev", &rev]));
    assert_eq!(r.code, Some(0), "{}", r.show());
    let md = &r.stdout;
    assert!(
        md.starts_with(&format!("## Gate `2pc` on `sandbox` at `{rev}`")),
        "{md}"
    );
    let skipped = not_applicable();
    assert!(
        md.contains(&format!(
            "**PASSED** — {} pass, 0 fail, 0 error, {} skip",
            DESIGN_IDS.len() - skipped.len(),
            skipped.len()
        )),
        "{md}"
    );
    for id in DESIGN_IDS {
        let row = if skipped.contains(id) {
            format!("| `{id}` | SKIP | no |")
        } else {
            format!("| `{id}` | PASS | yes |")
        };
        assert!(md.contains(&row), "{id}: {md}");
        let verdict = if skipped.contains(id) { "SKIP" } else { "PASS" };
        let section = md
            .split(&format!("### `{id}` — {verdict}"))
            .nth(1)
            .unwrap_or_else(|| panic!("no section for {id}: {md}"));
        let section = section.split("\n### ").next().unwrap_or_default();
        assert!(
            section.contains("```"),
            "{id}: no evidence block in its section:\n{section}"
        );
    }
}

#[test]
#[serial_test::file_serial(sandbox)]
fn a_wrong_expected_user_fails_only_the_auth_check_exit_1() {
    sandbox();
    let text = std::fs::read_to_string(workspace_root().join("verify/gates/2pc.toml")).unwrap();
    let from = "[targets.sandbox.params.auth]\nexpected_user = \"ccci-sandbox\"";
    assert!(text.contains(from), "2pc.toml no longer has `{from}`");
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("2pc-someone.toml");
    std::fs::write(
        &spec,
        text.replace(
            from,
            "[targets.sandbox.params.auth]\nexpected_user = \"someone\"",
        ),
    )
    .unwrap();
    let rev = head();
    let mut cmd = verify();
    cmd.arg("gate")
        .arg(&spec)
        .args(["--format", "json", "--rev", &rev]);
    for id in ["auth.daemon-authenticated", "store.docker-root-persistent"]
        .iter()
        .chain(UNIT_CHECKS)
    {
        cmd.args(["--check", id]);
    }
    let r = run(&mut cmd);
    assert_eq!(r.code, Some(1), "a failing check exits 1: {}", r.show());
    let v = assert_contract(&r.stdout, "2pc", "sandbox", &rev);
    let auth = check(&v, "auth.daemon-authenticated");
    assert_eq!(auth["verdict"], "fail", "{auth}");
    let detail = auth["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("`ccci-sandbox`") && detail.contains("expected `someone`"),
        "the reason names both users: {detail}"
    );
    for id in ["store.docker-root-persistent"].iter().chain(UNIT_CHECKS) {
        assert_eq!(check(&v, id)["verdict"], "pass", "{id} should not fail");
    }
    assert_eq!(v["summary"]["fail"], 1);

    // every format of the same failing run: exit 1, no secret, the failure visible
    for (format, needle) in [
        ("human", "FAIL"),
        ("markdown", "FAIL"),
        ("junit", "<failure"),
    ] {
        let r = run(verify().arg("gate").arg(&spec).args([
            "--format",
            format,
            "--check",
            "auth.daemon-authenticated",
        ]));
        assert_eq!(r.code, Some(1), "{format}: {}", r.show());
        assert!(r.stdout.contains(needle), "{format}: {}", r.show());
        assert!(r.stdout.contains("someone"), "{format}: {}", r.show());
        if format == "human" {
            // what a reviewer sees on a FAIL: the reason and the evidence, secret masked
            insta::with_settings!({filters => report_filters()}, {
                insta::assert_snapshot!("auth_wrong_user_human", r.stdout);
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// snapshots of a gate run restricted to the units checks (the host in its deployed state)

/// Redactions for reports: durations, shas and ids, systemd's times and run state.
fn report_filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            r"(NextElapseUSecRealtime|LastTriggerUSec)=[^\n]*",
            "$1=[time]",
        ),
        (r"(ExecMainStatus|ExecMainCode)=\d+", "$1=[n]"),
        (r"start_time=\[[^\]]*\]", "start_time=[time]"),
        (r"stop_time=\[[^\]]*\]", "stop_time=[time]"),
        (r"\bpid=\d+", "pid=[pid]"),
        (r"\bcode=[^ ;}]+", "code=[code]"),
        (r"\bstatus=[^ ;}]+", "status=[status]"),
        (
            r"[A-Z][a-z]{2} \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [A-Z]+",
            "[time]",
        ),
        (r"\b[0-9a-f]{40}\b", "[sha]"),
        (r"\b[0-9a-f]{12}\b", "[id]"),
        (r" +\d+ ms ", " [ms] "),
        (r"\| \d+ \|", "| [ms] |"),
        (r#"time="[0-9.]+""#, r#"time="[s]""#),
    ]
}

fn units_gate(format: &str) -> String {
    let mut cmd = verify();
    cmd.args(["gate", "2pc", "--format", format]);
    for id in UNIT_CHECKS {
        cmd.args(["--check", id]);
    }
    let r = run(&mut cmd);
    assert_eq!(r.code, Some(0), "{}", r.show());
    r.stdout
}

/// `--format prometheus` (issue 21, item 3): valid text format (the `prometheus-parse` crate
/// and Prometheus' own `promtool check metrics`), one verdict sample per check that says what
/// the JSON report of the same checks says, the gate's outcome and duration, no evidence.
#[test]
#[serial_test::file_serial(sandbox)]
fn units_gate_as_prometheus_metrics_says_what_the_json_says() {
    sandbox();
    let text = units_gate("prometheus");
    let json: Value = serde_json::from_str(&units_gate("json")).unwrap();
    ccci_tests::schema::assert_valid(ccci_tests::schema::GATE_REPORT, &json);
    let mut lint = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool (Debian package prometheus, see .ci/deps): {e}"));
    {
        use std::io::Write;
        lint.stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = lint.wait_with_output().unwrap();
    assert!(out.status.success(), "promtool: {out:?}\n{text}");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let sample_lines = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(
        scrape.samples.len(),
        sample_lines,
        "unparsed lines:\n{text}"
    );
    let value = |s: &prometheus_parse::Sample| match s.value {
        prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{other:?}"),
    };
    let verdicts: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "ccci_verify_check_verdict")
        .collect();
    let checks = json["checks"].as_array().unwrap();
    assert_eq!(verdicts.len(), checks.len(), "{text}");
    for c in checks {
        let id = c["id"].as_str().unwrap();
        let s = verdicts
            .iter()
            .find(|s| s.labels.get("check") == Some(id))
            .unwrap_or_else(|| panic!("no verdict sample for {id}:\n{text}"));
        assert_eq!(s.labels.get("verdict"), c["verdict"].as_str(), "{id}");
        assert_eq!(
            s.labels.get("blocking"),
            Some(if c["blocking"] == true {
                "true"
            } else {
                "false"
            }),
            "{id}"
        );
        assert_eq!(value(s), 1.0);
        for e in c["evidence"].as_array().unwrap() {
            for line in e["output"]
                .as_str()
                .unwrap()
                .lines()
                .filter(|l| l.len() > 8)
            {
                assert!(
                    !text.contains(line),
                    "evidence of {id} in the metrics: {line}"
                );
            }
        }
    }
    let gate = scrape
        .samples
        .iter()
        .find(|s| s.metric == "ccci_verify_gate_passed")
        .expect("gate_passed");
    assert_eq!(value(gate), 1.0, "the unit checks pass on the sandbox");
    assert_eq!(gate.labels.get("rev"), json["rev"].as_str());
    let duration = scrape
        .samples
        .iter()
        .find(|s| s.metric == "ccci_verify_gate_duration_seconds")
        .expect("gate_duration_seconds");
    assert!(value(duration) > 0.0);
}

#[test]
#[serial_test::file_serial(sandbox)]
fn units_gate_human_markdown_and_junit_snapshots() {
    sandbox();
    let human = units_gate("human");
    let markdown = units_gate("markdown");
    let junit = units_gate("junit");
    insta::with_settings!({filters => report_filters()}, {
        insta::assert_snapshot!("units_gate_human", human);
        insta::assert_snapshot!("units_gate_markdown", markdown);
        insta::assert_snapshot!("units_gate_junit", junit);
    });
}

// ---------------------------------------------------------------------------------------------
// secrets: a canary in every place a Docker client config keeps one never reaches any output

/// base64 of `<user>:<secret>`, as an `auth` field holds it.
fn auth_blob(user: &str, secret: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))
}

/// Canaries, one per place Docker's CLI reads a secret from, in the spellings its
/// case-insensitive JSON decoding accepts (docker/cli `configfile.ConfigFile`, Go's
/// `encoding/json`), beside fields that are no secret (a helper's name, a proxy's address).
const CANARY_AUTH: &str = "canary-Auth-s3cret";
const CANARY_PASSWORD: &str = "canary-Password-s3cret";
const CANARY_TOKEN: &str = "canary-IdentityToken-s3cret";
const CANARY_PROXY: &str = "canary-proxy-pa55word";
const CANARY_PROXY_NO_SCHEME: &str = "canary-proxy-noscheme-pa55";
const CANARY_HEADER: &str = "canary-header-t0ken";
const CANARY_PLUGIN: &str = "canary-plugin-t0ken";
const CANARY_UNKNOWN: &str = "canary-future-field-s3cret";
/// Plain fields the masked config must still show (the masking is not a blank-out).
const HELPER: &str = "ccci-canary-helper";
const PROXY_ADDRESS: &str = "proxy.invalid:3128";

/// The sandbox host's config with every canary in: the sandbox registry's working credential
/// spelled `Auths`/`Auth` (the user the gate expects, so `auth.daemon-authenticated` reads it
/// and has the daemon log in with it: its secret is the sandbox's, which no output may carry
/// either), the index's credential, another registry's `Password` and `IdentityToken`, a
/// credential helper for another registry, proxies with and without a scheme, a header, a
/// plugin's option and a field Docker may add tomorrow.
fn canary_config(original: &str) -> Value {
    let v: Value = serde_json::from_str(original).unwrap();
    let mut out = serde_json::Map::new();
    for (k, x) in v.as_object().unwrap() {
        if !k.eq_ignore_ascii_case("auths") {
            out.insert(k.clone(), x.clone());
        }
    }
    let mut v = Value::Object(out);
    v["Auths"] = serde_json::json!({
        (ccci_tests::ccci_sandbox::AUTH_REGISTRY_ADDR): {"Auth": auth_blob("ccci-sandbox", verify_cli::SANDBOX_SECRET)},
        "https://index.docker.io/v1/": {"Auth": auth_blob("ccci-sandbox", CANARY_AUTH)},
        "registry.invalid": {"Username": "someone", "Password": CANARY_PASSWORD, "IdentityToken": CANARY_TOKEN},
    });
    v["CredHelpers"] = serde_json::json!({"helped.invalid": HELPER});
    v["Proxies"] = serde_json::json!({"default": {
        "HttpProxy": format!("http://proxyuser:{CANARY_PROXY}@{PROXY_ADDRESS}"),
        "httpsProxy": format!("proxyuser:{CANARY_PROXY_NO_SCHEME}@{PROXY_ADDRESS}"),
        "noProxy": "localhost",
    }});
    v["httpHeaders"] = serde_json::json!({"X-Meta-Token": CANARY_HEADER});
    v["plugins"] = serde_json::json!({"ccci": {"token": CANARY_PLUGIN}});
    v["aFieldDockerMayAddTomorrow"] = Value::String(CANARY_UNKNOWN.into());
    v
}

/// Checks whose evidence shows the config: the probe's teardown prints it (the spec below)
/// and the auth check shows it masked.
const PRINTS_CONFIG: &[&str] = &["cache.image-survives-teardown", "auth.daemon-authenticated"];

#[test]
#[serial_test::file_serial(sandbox)]
fn no_secret_in_any_format_or_check_even_when_a_check_prints_the_config() {
    let info = sandbox();
    let config = "/root/.docker/config.json";
    // the file the path leads to (on NixOS a sops-rendered 0400 file behind a link), kept
    // with its mode so the link chain stays as deployed
    let file = ccci_tests::gate::host_sh(info, &format!("readlink -f {config}"))
        .trim()
        .to_string();
    let original = ccci_tests::gate::host_sh(info, &format!("cat {file}"));
    // written in place (`cat >` keeps the file's mode and owner; the archive upload cannot
    // reach the tmpfs under /run where sops-nix renders it)
    fn put(info: &ccci_tests::SandboxInfo, file: &str, text: &str) {
        let scratch = "/root/ccci-canary-config.json";
        ccci_tests::gate::upload(info, scratch, text.as_bytes(), 0o600);
        ccci_tests::gate::host_sh_quiet(info, &format!("cat {scratch} > {file}; rm -f {scratch}"));
    }
    struct Put<'a>(&'a ccci_tests::SandboxInfo, String, String);
    impl Drop for Put<'_> {
        fn drop(&mut self) {
            put(self.0, &self.1, &self.2);
        }
    }
    let _restore = Put(info, file.clone(), original.clone());
    let v = canary_config(&original);
    put(info, &file, &v.to_string());
    assert_eq!(
        ccci_tests::gate::host_sh(info, &format!("cat {file}")),
        v.to_string(),
        "the canary config is not in place"
    );
    let canaries = [
        CANARY_AUTH.to_string(),
        auth_blob("ccci-sandbox", CANARY_AUTH),
        CANARY_PASSWORD.to_string(),
        CANARY_TOKEN.to_string(),
        CANARY_PROXY.to_string(),
        CANARY_PROXY_NO_SCHEME.to_string(),
        CANARY_HEADER.to_string(),
        CANARY_PLUGIN.to_string(),
        CANARY_UNKNOWN.to_string(),
    ];

    // a spec whose probe teardown prints the whole config and then fails: a check that has
    // nothing to do with credentials puts every secret in its evidence, and it does not pass,
    // so the human report (which shows evidence only for checks that did not pass) prints it
    let text = std::fs::read_to_string(workspace_root().join("verify/gates/2pc.toml")).unwrap();
    let from = "teardown_extra = []";
    assert!(text.contains(from), "2pc.toml no longer has `{from}`");
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("2pc-cat-config.toml");
    std::fs::write(
        &spec,
        text.replace(
            from,
            &format!("teardown_extra = [[\"cat\", \"{config}\"], [\"false\"]]"),
        ),
    )
    .unwrap();
    // every check alone, the two that print the config together, and the whole gate
    let mut subsets: Vec<Vec<String>> = spec_ids().into_iter().map(|id| vec![id]).collect();
    subsets.push(PRINTS_CONFIG.iter().map(|s| s.to_string()).collect());
    subsets.push(vec![]);
    for only in &subsets {
        for format in ["human", "json", "junit", "markdown", "prometheus"] {
            let mut cmd = verify();
            cmd.arg("gate").arg(&spec).args(["--format", format]);
            for id in only {
                cmd.args(["--check", id]);
            }
            let r = run(&mut cmd); // run() asserts the sandbox secret is in neither stream
            let what = format!("{format} report of {only:?}");
            for canary in &canaries {
                assert!(
                    !r.stdout.contains(canary.as_str()) && !r.stderr.contains(canary.as_str()),
                    "{what} carries the canary {canary}:\n{}",
                    r.show()
                );
            }
            // the config was printed: masked, not missing, in every format but the metrics
            // (which never carry evidence)
            let printed = format != "prometheus"
                && (only.is_empty() || only.iter().any(|id| id == PRINTS_CONFIG[0]));
            if printed {
                assert!(
                    r.stdout.contains("[REDACTED]"),
                    "{what}: no masked secret, so the config was not printed: {}",
                    r.show()
                );
            }
            // the auth check read the mixed-case credential, and its masked copy of the config
            // still shows what is no secret
            if format == "json" && only.iter().any(|id| id == PRINTS_CONFIG[1]) {
                let report: Value = serde_json::from_str(&r.stdout).unwrap();
                let auth = report["checks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["id"] == PRINTS_CONFIG[1])
                    .unwrap();
                assert_eq!(auth["verdict"], "pass", "{what}: {auth}");
                let shown = auth["evidence"].to_string();
                // the daemon logged in with the credential: the call is evidence, its secret
                // masked
                assert!(
                    shown.contains("POST /auth") && shown.contains("Login Succeeded"),
                    "{what}: no login in the evidence: {shown}"
                );
                for plain in [HELPER, PROXY_ADDRESS, "localhost", "someone"] {
                    assert!(
                        shown.contains(plain),
                        "{what}: `{plain}` not shown: {shown}"
                    );
                }
            }
        }
    }
}
