//! The deployed prune, as the host runs it: its command line read from the service unit, that
//! command run with flags changed only where a check must change them, and its `--json` report
//! read as the typed v1 contract of `ci-docker-prune` (`prune/src/report.rs`). A leaf: the
//! `prune.*` checks and the probe use it; it decides nothing.

use crate::Ctx;
use ccci_core::{Halt, Trail};
use serde::Deserialize;

/// The deployed prune's command line: the service's first `ExecStart=` argv, its variables
/// substituted as systemd does ([`crate::unit_env`]). A service that is
/// not loaded, or has no `ExecStart`, ends the check as a failure: nothing deployed to examine.
pub async fn argv(ctx: &Ctx, t: &mut Trail) -> Result<Vec<String>, Halt> {
    let s = ctx.unit_state(t, &ctx.params.prune_service).await?;
    if !s.is_loaded() {
        return Err(Halt::fail(format!(
            "{} is not loaded (LoadState={}): nothing deployed to examine",
            s.name, s.load_state
        )));
    }
    let argv = s
        .exec_start
        .first()
        .cloned()
        .ok_or_else(|| Halt::fail(format!("{} has no ExecStart", s.name)))?;
    if !argv.iter().any(|a| a.contains('$')) {
        return Ok(argv);
    }
    // as systemd runs it: `$VAR`/`${VAR}` from the unit's environment
    let env = crate::unit_env::read(ctx, t, &s.name).await?;
    crate::unit_env::expand_argv(&argv, &env.vars).map_err(|e| {
        Halt::error(format!(
            "{}'s ExecStart cannot be run as systemd runs it: {e}",
            s.name
        ))
    })
}

/// The deployed argv with the flags in `strip` (each taking a value) and `--dry-run`/`--json`
/// removed, then `add`: the deployed run, changed only where a check must change it.
///
/// `--metrics-file` always goes: a reviewer's run must not write the host's production metrics
/// (a forced-open dry run would report threshold 0 and the disk over it, fire the alerts,
/// and refresh the last-run time that tells a dead timer).
pub fn with_flags(deployed: &[String], strip: &[&str], add: &[&str]) -> Vec<String> {
    let plain = ["--dry-run", "--json"];
    let always = ["--metrics-file"];
    let mut out = Vec::new();
    let mut skip = false;
    for a in deployed {
        if skip {
            skip = false;
            continue;
        }
        if always.iter().any(|f| a.starts_with(&format!("{f}="))) {
            continue;
        }
        if strip.contains(&a.as_str()) || always.contains(&a.as_str()) {
            skip = true;
            continue;
        }
        if plain.contains(&a.as_str()) || strip.iter().any(|f| a.starts_with(&format!("{f}="))) {
            continue;
        }
        out.push(a.clone());
    }
    out.extend(add.iter().map(|s| s.to_string()));
    out
}

/// The flags a dry run with every gate forced open adds; the deployed argv's own values of
/// these flags are dropped first, so the run is the deployed one with only the gates opened.
///
/// `--no-evict`: the checks that force the gates open ask about the leftovers step (what the
/// default policy removes); with the threshold forced to 0 the eviction tier would also run
/// and, on a host between its low watermark and its threshold, list the cached pulls it would
/// evict — the probe's among them — and fail a right host.
pub const FORCE_OPEN: &[&str] = &[
    "--dry-run",
    "--json",
    "--no-evict",
    "--threshold",
    "0",
    "--until",
    "0s",
    "--run-stack-pattern",
    "^ccci-verify-matches-no-service$",
];

/// The deployed argv without the flags [`FORCE_OPEN`] sets, then [`FORCE_OPEN`].
pub fn forced_open_argv(deployed: &[String]) -> Vec<String> {
    let mut v = with_flags(
        deployed,
        &["--threshold", "--until", "--run-stack-pattern"],
        &[],
    );
    v.retain(|a| a != "--no-evict");
    v.extend(FORCE_OPEN.iter().map(|s| s.to_string()));
    v
}

/// One gate of the report.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GateJson {
    pub gate: String,
    pub pass: bool,
    #[serde(default)]
    pub detail: String,
}

/// Ids removed, or in a dry run, that would be.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RemovedJson {
    #[serde(default)]
    pub containers: Vec<String>,
    #[serde(default)]
    pub images: Vec<String>,
    #[serde(default)]
    pub build_cache: Vec<String>,
}

/// The `--json` object of `ci-docker-prune`, contract version 1. Fields added later are
/// ignored (the contract only adds fields); the ones every v1 report has are required, so a
/// command that prints some other JSON is not taken for the prune.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PruneReport {
    pub version: u32,
    /// `skipped`, `pruned`, `dry-run` (or `error`).
    pub outcome: String,
    #[serde(default)]
    pub skipped_by: Option<String>,
    pub gates: Vec<GateJson>,
    #[serde(default)]
    pub removed: RemovedJson,
    #[serde(default)]
    pub reclaimed_bytes: u64,
}

impl PruneReport {
    pub fn parse(stdout: &[u8]) -> Result<PruneReport, serde_json::Error> {
        serde_json::from_slice(stdout)
    }

    /// The report's decision of gate `name`, if it got that far.
    pub fn gate(&self, name: &str) -> Option<&GateJson> {
        self.gates.iter().find(|g| g.gate == name)
    }
}

/// The unit properties a run of the deployed prune takes from its service: what it reads
/// (`Environment=`, `EnvironmentFile=`), where its state is (`StateDirectory=`, passed as
/// `$STATE_DIRECTORY`: the eviction tier's usage history) and who runs it.
const UNIT_PROPERTIES: &[&str] = &[
    "Environment",
    "EnvironmentFiles",
    "StateDirectory",
    "User",
    "Group",
    "DynamicUser",
    "SupplementaryGroups",
    "WorkingDirectory",
];

/// `systemd-run` properties (`-p K=V` pairs) that give a transient run the service's own
/// environment, from `systemctl show -p` [`UNIT_PROPERTIES`] output. `EnvironmentFiles=` lines
/// read `PATH (ignore_errors=yes|no)`; an ignored file is `-PATH`, as in a unit file.
pub fn unit_env_properties(show: &str) -> Vec<String> {
    let mut props = Vec::new();
    for line in show.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        match k {
            // `systemctl show` escapes `$` as `\$`, which `systemd-run -p` refuses; the
            // value itself is literal (Environment= does no `$` expansion)
            "Environment" => props.push(format!("{k}={}", v.replace("\\$", "$"))),
            "StateDirectory" | "User" | "Group" | "WorkingDirectory" | "SupplementaryGroups" => {
                props.push(format!("{k}={v}"))
            }
            "DynamicUser" => props.push(format!("{k}={v}")),
            "EnvironmentFiles" => {
                let (path, opts) = v.split_once(" (").unwrap_or((v, ""));
                let ignore = opts.contains("ignore_errors=yes");
                props.push(format!(
                    "EnvironmentFile={}{path}",
                    if ignore { "-" } else { "" }
                ));
            }
            _ => {}
        }
    }
    props
}

/// Run argv on the target as the service runs it: a transient unit (`systemd-run --wait
/// --pipe`) with the service's environment, environment files, state directory and user
/// ([`unit_env_properties`]), so a dry run sees what the timer's run sees (the `DOCKER_HOST` an
/// `Environment=` sets, the usage state the eviction tier orders by) and not the reviewer's
/// shell. Recorded in the trail, and read as [`run_json`] reads it.
pub async fn run_json_as_unit(
    ctx: &Ctx,
    t: &mut Trail,
    argv: &[String],
) -> Result<PruneReport, Halt> {
    let svc = ctx.params.prune_service.clone();
    let show = vec![
        "systemctl".to_string(),
        "show".into(),
        "-p".into(),
        UNIT_PROPERTIES.join(","),
        "--".into(),
        svc.clone(),
    ];
    let out = ctx.cmd_owned(t, &show).await?;
    if !out.ok() {
        return Err(Halt::error(format!(
            "cannot read the environment of {svc}: `systemctl show` exited {}: {}",
            out.status,
            out.combined()
        )));
    }
    let mut run = vec![
        "systemd-run".to_string(),
        "--wait".into(),
        "--pipe".into(),
        "--quiet".into(),
        "--collect".into(),
        "--service-type=exec".into(),
    ];
    for p in unit_env_properties(&out.stdout_str()) {
        run.push("-p".into());
        run.push(p);
    }
    run.push("--".into());
    run.extend(argv.iter().cloned());
    run_json(ctx, t, &run).await
}

/// Run argv on the target (recorded in the trail) and read its stdout as the prune's `--json`
/// report. A command that cannot run, or does not answer with the contract, is a failure:
/// the deployed command is not the prune this gate verifies.
pub async fn run_json(ctx: &Ctx, t: &mut Trail, argv: &[String]) -> Result<PruneReport, Halt> {
    let out = ctx
        .cmd_owned(t, argv)
        .await
        .map_err(|_| Halt::fail("the deployed prune could not be run"))?;
    PruneReport::parse(&out.stdout).map_err(|e| {
        Halt::fail(format!(
            "the deployed command does not answer --dry-run --json with the ci-docker-prune contract ({e}; exit {})",
            out.status
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_services_environment_becomes_systemd_run_properties() {
        // as systemd 252 prints them (`systemctl show -p …`)
        let show = "Environment=DOCKER_HOST=unix:///run/other.sock \"FLAGS=--a b\"\n\
                    EnvironmentFiles=/etc/default/prune (ignore_errors=no)\n\
                    EnvironmentFiles=/etc/prune.env (ignore_errors=yes)\n\
                    StateDirectory=ci-docker-prune\nUser=\nGroup=\nWorkingDirectory=\n";
        assert_eq!(
            unit_env_properties(show),
            vec![
                "Environment=DOCKER_HOST=unix:///run/other.sock \"FLAGS=--a b\"".to_string(),
                "EnvironmentFile=/etc/default/prune".into(),
                "EnvironmentFile=-/etc/prune.env".into(),
                "StateDirectory=ci-docker-prune".into(),
            ]
        );
        assert!(unit_env_properties("Environment=\nStateDirectory=\n").is_empty());
        // systemd 252 prints a literal `$` as `\$`; systemd-run takes it plain
        assert_eq!(
            unit_env_properties(
                "Environment=PASS=pa\\$\\$word\nDynamicUser=no\nSupplementaryGroups=docker\n"
            ),
            vec![
                "Environment=PASS=pa$$word".to_string(),
                "DynamicUser=no".into(),
                "SupplementaryGroups=docker".into(),
            ]
        );
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn a_reviewers_run_never_writes_the_hosts_metrics() {
        let d = s(&[
            "/p",
            "--metrics-file",
            "/var/lib/node_exporter/textfile/ci-docker-prune.prom",
            "--threshold",
            "80",
            "--metrics-file=/x.prom",
        ]);
        assert_eq!(
            with_flags(&d, &[], &["--dry-run", "--json"]),
            s(&["/p", "--threshold", "80", "--dry-run", "--json"])
        );
        assert!(!forced_open_argv(&d).iter().any(|a| a.contains("metrics")));
    }

    #[test]
    fn with_flags_keeps_the_deployed_run_and_changes_only_what_is_asked() {
        let d = s(&[
            "/usr/local/bin/ci-docker-prune",
            "--threshold",
            "80",
            "--path",
            "/",
            "--json",
        ]);
        assert_eq!(
            with_flags(&d, &[], &["--dry-run", "--json"]),
            s(&[
                "/usr/local/bin/ci-docker-prune",
                "--threshold",
                "80",
                "--path",
                "/",
                "--dry-run",
                "--json"
            ])
        );
        assert_eq!(
            with_flags(&d, &["--threshold"], &["--threshold", "0"]),
            s(&[
                "/usr/local/bin/ci-docker-prune",
                "--path",
                "/",
                "--threshold",
                "0"
            ])
        );
    }

    #[test]
    fn forced_open_drops_the_deployed_gate_flags() {
        let d = s(&[
            "/usr/local/bin/ci-docker-prune",
            "--threshold",
            "80",
            "--path",
            "/",
            "--until=24h",
            "--json",
        ]);
        let f = forced_open_argv(&d);
        assert_eq!(f.iter().filter(|a| *a == "--threshold").count(), 1);
        assert!(!f.contains(&"80".to_string()));
        assert!(f.contains(&"--path".to_string()) && f.contains(&"/".to_string()));
        assert!(!f.iter().any(|a| a.starts_with("--until=")));
        assert_eq!(f.iter().filter(|a| *a == "--json").count(), 1);
    }

    #[test]
    fn reads_the_report_the_prune_writes() {
        use ci_docker_prune::gates::{Gate, GateDecision};
        use ci_docker_prune::report::{Outcome, Report};
        let mut r = Report::new(
            Outcome::DryRun,
            vec![GateDecision {
                gate: Gate::Disk,
                pass: true,
                detail: "/ at 90% (≥ 80%)".into(),
            }],
        );
        r.removed.images.push("sha256:aaaa".into());
        r.reclaimed_bytes = 7;
        let parsed = PruneReport::parse(r.to_json().as_bytes()).unwrap();
        assert_eq!(parsed.version, 1);
        assert_eq!(parsed.outcome, "dry-run");
        assert_eq!(parsed.skipped_by, None);
        assert_eq!(parsed.gate("disk").map(|g| g.pass), Some(true));
        assert_eq!(parsed.removed.images, s(&["sha256:aaaa"]));
        assert_eq!(parsed.reclaimed_bytes, 7);

        r.skipped_by = Some(Gate::Converge);
        r.outcome = Outcome::Skipped;
        let parsed = PruneReport::parse(r.to_json().as_bytes()).unwrap();
        assert_eq!(parsed.skipped_by.as_deref(), Some("converge"));
        assert_eq!(parsed.outcome, "skipped");
    }

    #[test]
    fn other_json_is_not_the_contract() {
        assert!(PruneReport::parse(b"{}").is_err());
        assert!(PruneReport::parse(b"[1,2]").is_err());
        assert!(PruneReport::parse(b"not json").is_err());
        // fields a later v1 adds are accepted
        assert!(PruneReport::parse(
            br#"{"version":1,"outcome":"dry-run","gates":[],"removed":{"images":[]},"reclaimed_bytes":0,"new":1}"#
        )
        .is_ok());
    }
}
