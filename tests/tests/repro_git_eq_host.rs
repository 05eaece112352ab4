//! `repro.*` end to end: temporary git repositories (made with the git CLI, as a user makes
//! them) against the shared sandbox's systemd host, which runs `ci-docker-prune.*` from the
//! portable units and keeps the repo's `nix/` as its deployed source tree.
//!
//! The F2pc-1 story: a repo whose committed module declares `docker-prune.*` while the host
//! runs `ci-docker-prune.*` fails `repro.units-git-eq-host` with both names in its evidence;
//! committing the fix makes it pass; a host tree one byte off fails `repro.files-git-eq-host`;
//! a doc telling the reader `systemctl is-active docker-prune.timer` fails
//! `repro.docs-reference-declared-units`.

use ccci_checks::{Ctx, Params, BUILTIN_GATES};
use ccci_core::redact::Redactor;
use ccci_core::{GateSpec, Outcome, Verdict};
use ccci_host::Target;
use ccci_tests::bins::verify_bin;
use ccci_tests::git::Repo;
use std::path::{Path, PathBuf};
use std::process::Command;

const MODULE: &str = "nix/modules/docker-prune.nix";

fn params() -> Params {
    let (_, text) = BUILTIN_GATES
        .iter()
        .find(|(n, _)| *n == "2pc")
        .unwrap_or_else(|| panic!("no built-in gate 2pc"));
    let spec = GateSpec::parse(text, "2pc").unwrap_or_else(|e| panic!("{e}"));
    Params::from_table(&spec.params_for("sandbox", "sandbox")).unwrap_or_else(|e| panic!("{e}"))
}

fn sandbox_target() -> Target {
    ccci_tests::gate::sandbox_target(ccci_tests::sandbox())
}

/// Run a shell script in the sandbox's systemd host (test set-up, as an operator would).
fn host_sh(script: &str) -> (i64, String) {
    let info = ccci_tests::sandbox();
    ccci_tests::block_on(ccci_tests::ccci_sandbox::exec_in_host(
        info,
        &["sh", "-c", script],
    ))
    .unwrap_or_else(|e| panic!("exec in host: {e}"))
}

fn host_ok(script: &str) -> String {
    let (code, out) = host_sh(script);
    assert_eq!(code, 0, "`{script}` exited {code}: {out}");
    out
}

/// Run one catalog check against `target` comparing with `repo` at `rev`.
fn check(id: &str, target: Target, params: Params, repo: &Path, rev: &str) -> Outcome {
    let c = ccci_checks::find(id).unwrap_or_else(|| panic!("{id} is not in the catalog"));
    let ctx = Ctx::new(
        target,
        params,
        repo.to_path_buf(),
        rev.to_string(),
        Redactor::new(),
    );
    ccci_tests::block_on(async move { c.run(&ctx).await })
}

fn explain(o: &Outcome) -> String {
    let mut s = format!("{}: {}\n", o.verdict, o.detail);
    for e in &o.evidence {
        s.push_str(&format!("  $ {} ({:?})\n", e.command, e.exit));
        for l in e.output.lines().take(40) {
            s.push_str(&format!("    {l}\n"));
        }
    }
    s
}

fn evidence_text(o: &Outcome) -> String {
    o.evidence
        .iter()
        .map(|e| format!("{}\n{}\n", e.command, e.output))
        .collect()
}

fn fixture(name: &str) -> Vec<u8> {
    let p = ccci_tests::workspace_root().join("fixtures/nix").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The module exactly as the sandbox host has it in its deployed tree.
fn deployed_module(params: &Params) -> Vec<u8> {
    let path = format!("{}/{MODULE}", params.repro.deployed_tree);
    let t = sandbox_target();
    ccci_tests::block_on(async move { t.read_file(&path).await })
        .unwrap_or_else(|e| panic!("read {MODULE} on the host: {e}"))
        .unwrap_or_else(|| panic!("the sandbox host has no deployed {MODULE}"))
}

/// Restores the host's units when a test that changed them ends (also on panic).
struct UnitCleanup(&'static str);

impl Drop for UnitCleanup {
    fn drop(&mut self) {
        let _ = host_sh(self.0);
    }
}

#[test]
#[serial_test::file_serial(sandbox)]
fn f2pc1_committed_module_differs_from_the_host_then_the_fix_passes() {
    let p = params();
    let repo = Repo::new();
    let bad = repo.commit(
        &[(MODULE, &fixture("docker-prune-bad-rev.nix"))],
        "docker-prune module (F2pc-1 bad rev)",
    );
    let o = check(
        "repro.units-git-eq-host",
        sandbox_target(),
        p.clone(),
        repo.path(),
        &bad,
    );
    assert_eq!(o.verdict, Verdict::Fail, "{}", explain(&o));
    for needle in [
        "docker-prune.timer is declared in git but not loaded on the host",
        "docker-prune.service is declared in git but not loaded on the host",
        "ci-docker-prune.timer exists on the host but git does not declare it",
        "ci-docker-prune.service exists on the host but git does not declare it",
    ] {
        assert!(
            o.detail.contains(needle),
            "`{needle}` missing: {}",
            explain(&o)
        );
    }
    let side = o
        .evidence
        .iter()
        .find(|e| e.command.contains("side by side"))
        .map(|e| e.output.clone())
        .unwrap_or_else(|| panic!("no side-by-side evidence: {}", explain(&o)));
    let row = |name: &str| {
        side.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not in\n{side}"))
            .to_string()
    };
    assert!(
        row("docker-prune.timer").contains("declared nix/modules/docker-prune.nix:"),
        "{side}"
    );
    assert!(row("docker-prune.timer").contains("not-found"), "{side}");
    assert!(
        row("ci-docker-prune.timer").contains("not declared"),
        "{side}"
    );
    assert!(
        row("ci-docker-prune.timer").contains("LoadState=loaded"),
        "{side}"
    );

    // The fix: commit the module the host was deployed from.
    let fixed = repo.commit(
        &[(MODULE, &deployed_module(&p))],
        "rename units to ci-docker-prune",
    );
    let o = check(
        "repro.units-git-eq-host",
        sandbox_target(),
        p.clone(),
        repo.path(),
        &fixed,
    );
    assert_eq!(o.verdict, Verdict::Pass, "{}", explain(&o));
    assert!(
        o.detail
            .contains("ci-docker-prune.service, ci-docker-prune.timer"),
        "{}",
        o.detail
    );
    let o = check(
        "repro.files-git-eq-host",
        sandbox_target(),
        p.clone(),
        repo.path(),
        "HEAD",
    );
    assert_eq!(o.verdict, Verdict::Pass, "{}", explain(&o));

    // The bad revision stays bad when named explicitly after the fix.
    let o = check(
        "repro.units-git-eq-host",
        sandbox_target(),
        p.clone(),
        repo.path(),
        &bad,
    );
    assert_eq!(o.verdict, Verdict::Fail, "{}", explain(&o));
    // and its module file differs from the host's (the hashes of both are evidence)
    let o = check(
        "repro.files-git-eq-host",
        sandbox_target(),
        p,
        repo.path(),
        &bad,
    );
    assert_eq!(o.verdict, Verdict::Fail, "{}", explain(&o));
    assert!(
        evidence_text(&o).contains("ci-docker-prune"),
        "the diff shows the rename: {}",
        explain(&o)
    );
}

#[test]
#[serial_test::file_serial(sandbox)]
fn host_tree_one_byte_off_fails_files_check() {
    let p = params();
    let deployed = deployed_module(&p);
    let repo = Repo::new();
    let same = repo.commit(&[(MODULE, &deployed)], "as deployed");
    let o = check(
        "repro.files-git-eq-host",
        sandbox_target(),
        p.clone(),
        repo.path(),
        &same,
    );
    assert_eq!(o.verdict, Verdict::Pass, "{}", explain(&o));

    // One byte differs: git has an `x` where the host has the first character.
    let mut one_off = deployed.clone();
    one_off[0] = if one_off[0] == b'x' { b'y' } else { b'x' };
    let off = repo.commit(&[(MODULE, &one_off)], "one byte");
    let o = check(
        "repro.files-git-eq-host",
        sandbox_target(),
        p.clone(),
        repo.path(),
        &off,
    );
    assert_eq!(o.verdict, Verdict::Fail, "{}", explain(&o));
    assert!(
        o.detail.contains(&format!("{MODULE} differs")),
        "{}",
        o.detail
    );
    let ev = evidence_text(&o);
    let git_hash = ccci_host::sha256_hex(&one_off);
    let host_hash = ccci_host::sha256_hex(&deployed);
    assert!(
        ev.contains(&git_hash) && ev.contains(&host_hash),
        "both hashes: {ev}"
    );
    assert!(ev.contains("@@"), "a unified diff: {ev}");

    // The host has no deployed tree where the gate says.
    let mut elsewhere = p.clone();
    elsewhere.repro.deployed_tree = "/nonexistent/ccci-tree".into();
    let o = check(
        "repro.files-git-eq-host",
        sandbox_target(),
        elsewhere,
        repo.path(),
        &same,
    );
    assert_eq!(o.verdict, Verdict::Fail, "{}", explain(&o));
    assert!(o.detail.contains("missing from the host"), "{}", o.detail);

    // A module file of the gate that git does not have at REV.
    let mut other = p;
    other.repro.module_files = vec!["nix/modules/absent.nix".into()];
    let o = check(
        "repro.files-git-eq-host",
        sandbox_target(),
        other,
        repo.path(),
        &same,
    );
    assert_eq!(o.verdict, Verdict::Fail, "{}", explain(&o));
    assert!(o.detail.contains("not in git"), "{}", o.detail);
}

#[test]
#[serial_test::file_serial(sandbox)]
fn legacy_and_stale_units_on_the_host_fail() {
    let p = params();
    let repo = Repo::new();
    let rev = repo.commit(&[(MODULE, &deployed_module(&p))], "as deployed");
    let _cleanup = UnitCleanup(
        "systemctl stop ci-docker-prune-old.service docker-prune.timer 2>/dev/null; \
         rm -f /etc/systemd/system/docker-prune.timer /etc/systemd/system/docker-prune.service \
               /etc/systemd/system/ci-docker-prune-old.service; \
         systemctl daemon-reload; systemctl reset-failed 2>/dev/null; true",
    );
    let o = check(
        "repro.units-git-eq-host",
        sandbox_target(),
        p.clone(),
        repo.path(),
        &rev,
    );
    assert_eq!(o.verdict, Verdict::Pass, "precondition: {}", explain(&o));

    // The legacy timer is installed again (what autoPrune does on NixOS).
    host_ok(
        "printf '[Unit]\\nDescription=legacy\\n[Timer]\\nOnCalendar=weekly\\n' > /etc/systemd/system/docker-prune.timer; \
         printf '[Service]\\nType=oneshot\\nExecStart=/bin/true\\n' > /etc/systemd/system/docker-prune.service; \
         systemctl daemon-reload",
    );
    let o = check(
        "repro.units-git-eq-host",
        sandbox_target(),
        p.clone(),
        repo.path(),
        &rev,
    );
    assert_eq!(o.verdict, Verdict::Fail, "{}", explain(&o));
    assert!(
        o.detail
            .contains("legacy docker-prune.timer is still known to systemd"),
        "{}",
        o.detail
    );
    assert!(
        o.detail
            .contains("docker-prune.timer exists on the host but git does not declare it"),
        "{}",
        o.detail
    );
    host_ok(
        "rm -f /etc/systemd/system/docker-prune.timer /etc/systemd/system/docker-prune.service; systemctl daemon-reload",
    );
    let o = check(
        "repro.units-git-eq-host",
        sandbox_target(),
        p.clone(),
        repo.path(),
        &rev,
    );
    assert_eq!(
        o.verdict,
        Verdict::Pass,
        "after removing the legacy units: {}",
        explain(&o)
    );

    // A stale leftover of the family: started, then its unit file deleted without a reload.
    host_ok(
        "printf '[Service]\\nType=oneshot\\nRemainAfterExit=yes\\nExecStart=/bin/true\\n' > /etc/systemd/system/ci-docker-prune-old.service; \
         systemctl daemon-reload; systemctl start ci-docker-prune-old.service; \
         rm -f /etc/systemd/system/ci-docker-prune-old.service",
    );
    let o = check(
        "repro.units-git-eq-host",
        sandbox_target(),
        p.clone(),
        repo.path(),
        &rev,
    );
    assert_eq!(o.verdict, Verdict::Fail, "{}", explain(&o));
    assert!(
        o.detail
            .contains("stale leftover ci-docker-prune-old.service"),
        "{}",
        explain(&o)
    );
    assert!(
        o.detail
            .contains("ci-docker-prune-old.service exists on the host but git does not declare it"),
        "{}",
        o.detail
    );

    host_ok("systemctl stop ci-docker-prune-old.service; systemctl daemon-reload; systemctl reset-failed 2>/dev/null; true");
    let o = check(
        "repro.units-git-eq-host",
        sandbox_target(),
        p,
        repo.path(),
        &rev,
    );
    assert_eq!(
        o.verdict,
        Verdict::Pass,
        "after the cleanup: {}",
        explain(&o)
    );
}

#[test]
fn docs_that_use_a_legacy_name_as_present_fail() {
    // The docs check reads only git; the target is not asked anything.
    let p = params();
    let repo = Repo::new();
    let module = fixture("docker-prune-fixed.nix");
    let bad_doc = b"# Status\n\nVerify the prune is scheduled:\n\n```sh\nsystemctl is-active docker-prune.timer\n```\n";
    let bad = repo.commit(
        &[
            (MODULE, &module),
            ("docs/status.md", bad_doc),
            ("README.md", b"# x\n"),
        ],
        "doc",
    );
    let o = check(
        "repro.docs-reference-declared-units",
        Target::local(),
        p.clone(),
        repo.path(),
        &bad,
    );
    assert_eq!(o.verdict, Verdict::Fail, "{}", explain(&o));
    assert!(o.detail.contains("docs/status.md:6"), "{}", o.detail);
    assert!(
        o.detail.contains("legacy docker-prune.timer"),
        "{}",
        o.detail
    );

    // A name nobody declares fails too.
    let typo = repo.commit(
        &[(
            "docs/status.md",
            b"Run `systemctl start ci-docker-prunee.service`.\n",
        )],
        "typo",
    );
    let o = check(
        "repro.docs-reference-declared-units",
        Target::local(),
        p.clone(),
        repo.path(),
        &typo,
    );
    assert_eq!(o.verdict, Verdict::Fail, "{}", explain(&o));
    assert!(
        o.detail
            .contains("ci-docker-prunee.service, which git does not declare"),
        "{}",
        o.detail
    );

    let good_doc = b"# Status\n\n```sh\nsystemctl is-active ci-docker-prune.timer\n\
systemctl show -p LoadState docker-prune.timer   # expect LoadState=not-found\n```\n\
Also `systemctl status ci-docker-prune` and `systemctl status docker`.\n";
    let good = repo.commit(&[("docs/status.md", good_doc)], "fix doc");
    let o = check(
        "repro.docs-reference-declared-units",
        Target::local(),
        p.clone(),
        repo.path(),
        &good,
    );
    assert_eq!(o.verdict, Verdict::Pass, "{}", explain(&o));
    let ev = evidence_text(&o);
    assert!(
        ev.contains("docs/status.md:5") && ev.contains("(absence check)"),
        "{ev}"
    );

    // The bad revision is still judged by its own docs.
    let o = check(
        "repro.docs-reference-declared-units",
        Target::local(),
        p,
        repo.path(),
        &bad,
    );
    assert_eq!(o.verdict, Verdict::Fail, "{}", explain(&o));
}

#[test]
#[serial_test::file_serial(sandbox)]
fn the_repository_itself_against_the_sandbox() {
    // The sandbox's deployed tree is this repository's own `nix/` (copied from the work
    // tree when the sandbox was deployed). At HEAD the units check passes; the files check
    // passes exactly when the work tree's module is the committed one.
    let p = params();
    let root: PathBuf = ccci_tests::workspace_root();
    let head = ccci_nix::GitRepo::open(&root)
        .and_then(|g| g.resolve("HEAD"))
        .unwrap_or_else(|e| panic!("{e}"));
    let o = check(
        "repro.units-git-eq-host",
        sandbox_target(),
        p.clone(),
        &root,
        &head,
    );
    assert_eq!(o.verdict, Verdict::Pass, "{}", explain(&o));
    let committed = ccci_nix::GitRepo::open(&root)
        .and_then(|g| g.read_file(&head, MODULE))
        .unwrap_or_else(|e| panic!("{e}"));
    let deployed = deployed_module(&p);
    let o = check("repro.files-git-eq-host", sandbox_target(), p, &root, &head);
    let want = if committed == deployed {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    assert_eq!(o.verdict, want, "{}", explain(&o));
}

#[test]
fn the_repository_docs_at_head_name_only_declared_units() {
    let root: PathBuf = ccci_tests::workspace_root();
    let head = ccci_nix::GitRepo::open(&root)
        .and_then(|g| g.resolve("HEAD"))
        .unwrap_or_else(|e| panic!("{e}"));
    let o = check(
        "repro.docs-reference-declared-units",
        Target::local(),
        params(),
        &root,
        &head,
    );
    eprintln!("{}", explain(&o));
    assert_eq!(o.verdict, Verdict::Pass, "{}", explain(&o));
}

#[test]
#[serial_test::file_serial(sandbox)]
fn gate_command_on_the_story_exits_1_then_0() {
    let p = params();
    let deployed = deployed_module(&p);
    let repo = Repo::new();
    let bad = repo.commit(&[(MODULE, &fixture("docker-prune-bad-rev.nix"))], "bad");
    let fixed = repo.commit(&[(MODULE, &deployed)], "fix");
    let gate = |rev: &str| {
        Command::new(verify_bin())
            .args([
                "gate",
                "2pc",
                "--check",
                "repro.units-git-eq-host",
                "--check",
                "repro.files-git-eq-host",
                "--format",
                "json",
                "--rev",
                rev,
                "--repo",
            ])
            .arg(repo.path())
            .env("CCCI_SANDBOX_NAME", &ccci_tests::sandbox().name)
            .output()
            .unwrap_or_else(|e| panic!("ccci-verify gate: {e}"))
    };
    let out = gate(&bad);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    ccci_tests::schema::assert_valid(ccci_tests::schema::GATE_REPORT, &report);
    assert_eq!(report["rev"], bad.as_str());
    let units = &report["checks"][0];
    assert_eq!(units["id"], "repro.units-git-eq-host");
    assert_eq!(units["verdict"], "fail");
    let detail = units["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("docker-prune.timer is declared in git"),
        "{detail}"
    );
    assert!(
        detail.contains("ci-docker-prune.timer exists on the host"),
        "{detail}"
    );
    assert_eq!(report["checks"][1]["verdict"], "fail");

    let out = gate(&fixed);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let out = gate("no-such-rev");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
