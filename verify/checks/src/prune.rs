//! `prune.*`: what the deployed prune does and asks for. `prune.noop-below-threshold` runs the
//! deployed service for real and reads its decision from the journal; `prune.never-all-never-volumes`
//! reads the deployed command line and config; `prune.keeps-deployed-images` reads the shared
//! probe (see [`crate::probe`]).

use crate::units::show_one;
use crate::{Ctx, DynCheck};
use async_trait::async_trait;
use ccci_core::{Check, Evidence, Outcome};
use std::collections::BTreeSet;
use std::sync::Arc;

pub fn checks() -> Vec<DynCheck> {
    vec![
        Arc::new(NoopBelowThreshold),
        Arc::new(NeverAllNeverVolumes),
        Arc::new(KeepsDeployedImages),
    ]
}

/// The deployed prune's command line: the service's first `ExecStart=` argv.
pub async fn deployed_argv(ctx: &Ctx) -> Result<(Vec<String>, Evidence), Outcome> {
    let (s, ev) = show_one(ctx, &ctx.params.prune_service).await?;
    if !s.is_loaded() {
        return Err(Outcome::fail(format!(
            "{} is not loaded (LoadState={}): nothing deployed to examine",
            s.name, s.load_state
        ))
        .with_evidence([ev]));
    }
    match s.exec_start.first() {
        Some(argv) => Ok((argv.clone(), ev)),
        None => Err(Outcome::fail(format!("{} has no ExecStart", s.name)).with_evidence([ev])),
    }
}

/// The deployed argv with the flags in `strip` (each taking a value) and `--dry-run`/`--json`
/// removed, then `add`: the deployed run, changed only where a check must change it.
pub fn with_flags(deployed: &[String], strip: &[&str], add: &[&str]) -> Vec<String> {
    let plain = ["--dry-run", "--json"];
    let mut out = Vec::new();
    let mut skip = false;
    for a in deployed {
        if skip {
            skip = false;
            continue;
        }
        if strip.contains(&a.as_str()) {
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

/// Run argv on the target and read its stdout as the prune's `--json` object.
pub async fn run_json(ctx: &Ctx, argv: &[String]) -> (Result<serde_json::Value, String>, Evidence) {
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let (out, ev) = ctx.run(&refs).await;
    let v = match out {
        None => Err("the deployed prune could not be run".to_string()),
        Some(out) => serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "the deployed command does not answer --dry-run --json with the ci-docker-prune contract ({e}; exit {})",
                out.status
            )
        }),
    };
    (v, ev)
}

async fn store_snapshot(ctx: &Ctx) -> Result<(BTreeSet<String>, BTreeSet<String>), String> {
    let docker = ctx.target.docker().await.map_err(|e| e.to_string())?;
    let images = docker
        .list_images(Some(bollard::query_parameters::ListImagesOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .map_err(|e| format!("GET /images/json: {e}"))?
        .into_iter()
        .map(|i| i.id)
        .collect();
    let containers = docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .map_err(|e| format!("GET /containers/json: {e}"))?
        .into_iter()
        .filter_map(|c| c.id)
        .collect();
    Ok((images, containers))
}

/// Decision of `prune.noop-below-threshold` from the run's journal lines, the threshold the
/// gate expects, and what disappeared from the store during the run.
pub fn decide_noop(
    log: &str,
    keep_line: &str,
    expected_threshold: u8,
    removed_images: usize,
    removed_containers: usize,
) -> Outcome {
    let decision = log
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("ci-docker-prune:"))
        .collect::<Vec<_>>()
        .join("; ");
    if decision.is_empty() {
        return Outcome::fail("the run logged no `ci-docker-prune:` decision line".to_string());
    }
    // the disk decision: "<path> at N% (< T%)" or "(≥ T%"
    let re = regex::Regex::new(r"at (\d+)% \((<|≥) (\d+)%").expect("static regex");
    // the last disk decision of the run (the journal window may reach back a little)
    if let Some(c) = re.captures_iter(&decision).last() {
        let usage: u32 = c[1].parse().unwrap_or(0);
        let threshold: u32 = c[3].parse().unwrap_or(0);
        if threshold != u32::from(expected_threshold) {
            return Outcome::fail(format!(
                "the deployed prune uses a threshold of {threshold}%, the gate expects {expected_threshold}%: {decision}"
            ));
        }
        if usage >= threshold {
            return Outcome::skip(format!(
                "the disk is at {usage}% (≥ {threshold}%) now, so a below-threshold run cannot be shown: {decision}"
            ));
        }
    }
    if decision.contains(keep_line) {
        if removed_images == 0 && removed_containers == 0 {
            return Outcome::pass(format!(
                "below the threshold it removed nothing: {decision}"
            ));
        }
        return Outcome::fail(format!(
            "it logged `{keep_line}` but {removed_images} image(s) and {removed_containers} container(s) disappeared during the run"
        ));
    }
    Outcome::fail(format!(
        "below the threshold the run did not keep the cache (no `{keep_line}` line): {decision}"
    ))
}

struct NoopBelowThreshold;
#[async_trait]
impl Check<Ctx> for NoopBelowThreshold {
    fn id(&self) -> &'static str {
        "prune.noop-below-threshold"
    }
    fn title(&self) -> &'static str {
        "a run below the threshold removes nothing and logs that it keeps the cache"
    }
    async fn run(&self, ctx: &Ctx) -> Outcome {
        let svc = ctx.params.prune_service.as_str();
        // first ask the deployed prune, in a dry run, whether the disk is below its threshold:
        // a reviewer's run must never make a real prune remove anything
        let (argv, ev) = match deployed_argv(ctx).await {
            Ok(x) => x,
            Err(o) => return o,
        };
        let mut evidence = vec![ev];
        let dry = with_flags(&argv, &[], &["--dry-run", "--json"]);
        let (v, ev) = run_json(ctx, &dry).await;
        evidence.push(ev);
        let v = match v {
            Ok(v) => v,
            Err(e) => {
                return Outcome::fail(format!("{e}: not run for real")).with_evidence(evidence)
            }
        };
        let disk = v["gates"]
            .as_array()
            .and_then(|g| g.iter().find(|g| g["gate"] == "disk"));
        if let Some(d) = disk {
            if d["pass"].as_bool() == Some(true) {
                return Outcome::skip(format!(
                    "the disk is at or above the threshold now ({}), so a below-threshold run cannot be shown; the real prune was not started",
                    d["detail"].as_str().unwrap_or("")
                ))
                .with_evidence(evidence);
            }
        }
        let before = match store_snapshot(ctx).await {
            Ok(s) => s,
            Err(e) => return Outcome::error(e),
        };
        evidence.push(Evidence::api(
            "GET /images/json?all=1; GET /containers/json?all=1 (before)",
            format!("{} images, {} containers", before.0.len(), before.1.len()),
        ));
        // the host's clock marks the start: the journal is read from there (stdout lines of a
        // unit carry no invocation id on every systemd, e.g. under cgroup v1)
        let (now, ev) = ctx.run(&["date", "+%s.%N"]).await;
        evidence.push(ev);
        let since = now
            .map(|o| o.stdout_str().trim().to_string())
            .filter(|s| s.parse::<f64>().is_ok())
            .map(|s| format!("@{s}"));
        let Some(since) = since else {
            return Outcome::error("cannot read the target's clock (`date +%s.%N`)")
                .with_evidence(evidence);
        };
        let (out, ev) = ctx.run(&["systemctl", "start", svc]).await;
        evidence.push(ev);
        let Some(out) = out else {
            return Outcome::error(format!("cannot start {svc}")).with_evidence(evidence);
        };
        let (log, ev) = ctx
            .run(&[
                "journalctl",
                "--no-pager",
                "-o",
                "cat",
                "-u",
                svc,
                "--since",
                &since,
            ])
            .await;
        evidence.push(ev);
        let log = log.map(|o| o.stdout_str()).unwrap_or_default();
        let after = match store_snapshot(ctx).await {
            Ok(s) => s,
            Err(e) => return Outcome::error(e).with_evidence(evidence),
        };
        let gone_images = before.0.difference(&after.0).count();
        let gone_containers = before.1.difference(&after.1).count();
        evidence.push(Evidence::api(
            "GET /images/json?all=1; GET /containers/json?all=1 (after)",
            format!(
                "{} images, {} containers; gone during the run: {gone_images} images, {gone_containers} containers",
                after.0.len(),
                after.1.len()
            ),
        ));
        if !out.ok() {
            return Outcome::fail(format!(
                "`systemctl start {svc}` exited {}: the run failed",
                out.status
            ))
            .with_evidence(evidence);
        }
        decide_noop(
            &log,
            &ctx.params.keep_line,
            ctx.params.threshold,
            gone_images,
            gone_containers,
        )
        .with_evidence(evidence)
    }
}

/// Words that ask a prune for everything or for volumes, in a command line or script.
const FORBIDDEN_ARGS: &[&str] = &["--all", "-a", "-af", "-fa", "--volumes", "--all=true"];

/// Scan a deployed command line (and any script or config it names, given as `texts`) for a
/// request for `all` or for volumes.
pub fn find_forbidden(argv: &[String], texts: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    let prog = argv
        .first()
        .map(|p| p.rsplit('/').next().unwrap_or(p))
        .unwrap_or("");
    let is_prune_cmd = argv.iter().any(|a| a == "prune") || prog == "ci-docker-prune";
    for a in argv {
        if is_prune_cmd && FORBIDDEN_ARGS.contains(&a.as_str()) {
            found.push(format!("command line asks for `{a}`"));
        }
        if a.contains("volume") && (a.contains("prune") || argv.iter().any(|x| x == "prune")) {
            found.push(format!("command line touches volumes: `{a}`"));
        }
    }
    for (name, text) in texts {
        for (n, line) in text.lines().enumerate() {
            let code = line.split('#').next().unwrap_or("");
            let words: Vec<&str> = code.split_whitespace().collect();
            let prunes = words.contains(&"prune") || code.contains("/prune");
            if prunes {
                for w in &words {
                    let w = w.trim_matches(|c| c == '"' || c == '\'' || c == ';');
                    if FORBIDDEN_ARGS.contains(&w) {
                        found.push(format!("{name}:{}: asks for `{w}`: {}", n + 1, line.trim()));
                    }
                }
                if code.contains("volume") {
                    found.push(format!("{name}:{}: prunes volumes: {}", n + 1, line.trim()));
                }
            }
            if code.contains("all=true")
                || code.contains("all=1")
                || code.contains("/volumes/prune")
            {
                found.push(format!(
                    "{name}:{}: API call asks for all/volumes: {}",
                    n + 1,
                    line.trim()
                ));
            }
            // TOML config keys
            let t = code.trim();
            for key in ["all", "volumes", "prune_volumes"] {
                if let Some(rest) = t.strip_prefix(key) {
                    if rest.trim_start().starts_with('=') && rest.contains("true") {
                        found.push(format!("{name}:{}: config sets `{t}`", n + 1));
                    }
                }
            }
        }
    }
    found
}

struct NeverAllNeverVolumes;
#[async_trait]
impl Check<Ctx> for NeverAllNeverVolumes {
    fn id(&self) -> &'static str {
        "prune.never-all-never-volumes"
    }
    fn title(&self) -> &'static str {
        "the deployed unit's command line and config ask for no --all and no volumes"
    }
    async fn run(&self, ctx: &Ctx) -> Outcome {
        let (argv, ev) = match deployed_argv(ctx).await {
            Ok(x) => x,
            Err(o) => return o,
        };
        let mut evidence = vec![ev];
        let mut texts = Vec::new();
        // a config file named by --config, or a script run by the unit
        let mut files: Vec<String> = Vec::new();
        for (i, a) in argv.iter().enumerate() {
            if a == "--config" {
                if let Some(f) = argv.get(i + 1) {
                    files.push(f.clone());
                }
            } else if let Some(f) = a.strip_prefix("--config=") {
                files.push(f.to_string());
            }
        }
        let prog = argv.first().cloned().unwrap_or_default();
        let prog_name = prog.rsplit('/').next().unwrap_or(&prog).to_string();
        if prog_name != "ci-docker-prune" && prog_name != "docker" {
            // a wrapper: read it when it is a script (text), and a `-c` string when a shell
            files.push(prog.clone());
            // (systemd shows argv joined by spaces, so the `-c` script is the rest of it)
            if let Some(pos) = argv.iter().position(|a| a == "-c") {
                if pos + 1 < argv.len() {
                    texts.push(("ExecStart -c".to_string(), argv[pos + 1..].join(" ")));
                }
            }
        }
        for f in files {
            match ctx.target.read_file(&f).await {
                Ok(Some(bytes)) => {
                    let looks_text = bytes.iter().take(4096).all(|b| *b != 0);
                    if looks_text {
                        let text = String::from_utf8_lossy(&bytes).into_owned();
                        evidence.push(Evidence::new(format!("cat -- {f}"), Some(0), text.clone()));
                        texts.push((f, text));
                    } else {
                        evidence.push(Evidence::new(
                            format!("cat -- {f}"),
                            Some(0),
                            format!("({} bytes, binary: the program itself)", bytes.len()),
                        ));
                    }
                }
                Ok(None) => {
                    return Outcome::fail(format!("the unit names {f}, which does not exist"))
                        .with_evidence(evidence)
                }
                Err(e) => {
                    return Outcome::error(format!("cannot read {f}: {e}")).with_evidence(evidence)
                }
            }
        }
        let found = find_forbidden(&argv, &texts);
        let shown = argv.join(" ");
        if found.is_empty() {
            Outcome::pass(format!("`{shown}` asks for no --all and no volumes"))
                .with_evidence(evidence)
        } else {
            Outcome::fail(found.join("; ")).with_evidence(evidence)
        }
    }
}

struct KeepsDeployedImages;
#[async_trait]
impl Check<Ctx> for KeepsDeployedImages {
    fn id(&self) -> &'static str {
        "prune.keeps-deployed-images"
    }
    fn title(&self) -> &'static str {
        "after a teardown of a swarm-deployed probe, a dry run of the deployed prune with every gate open does not list the probe's image"
    }
    async fn run(&self, ctx: &Ctx) -> Outcome {
        let run = crate::probe::get(ctx).await;
        run.decide_keeps_deployed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn forbidden_args_are_found_in_argv_scripts_and_config() {
        assert!(find_forbidden(
            &s(&["/usr/local/bin/ci-docker-prune", "--threshold", "80"]),
            &[]
        )
        .is_empty());
        assert!(!find_forbidden(
            &s(&["/usr/bin/docker", "system", "prune", "--all", "-f"]),
            &[]
        )
        .is_empty());
        assert!(!find_forbidden(&s(&["docker", "system", "prune", "-af"]), &[]).is_empty());
        assert!(!find_forbidden(&s(&["docker", "system", "prune", "--volumes"]), &[]).is_empty());
        assert!(!find_forbidden(&s(&["/usr/local/bin/ci-docker-prune", "--all"]), &[]).is_empty());
        let script = (
            "/x.sh".to_string(),
            "#!/bin/sh\ndocker image prune -a -f # evict\n".to_string(),
        );
        assert!(!find_forbidden(&s(&["/x.sh"]), &[script]).is_empty());
        let ok_script = (
            "/x.sh".to_string(),
            "#!/bin/sh\n# never --all\ndocker image prune -f\n".to_string(),
        );
        assert!(find_forbidden(&s(&["/x.sh"]), &[ok_script]).is_empty());
        let cfg = (
            "/etc/p.toml".to_string(),
            "threshold = 80\nvolumes = true\n".to_string(),
        );
        assert!(!find_forbidden(&s(&["ci-docker-prune"]), &[cfg]).is_empty());
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
    fn noop_decisions() {
        use ccci_core::Verdict::*;
        let keep = "keeping local image cache";
        let below = "ci-docker-prune: / at 31% (< 80%) — keeping local image cache, nothing to do";
        assert_eq!(decide_noop(below, keep, 80, 0, 0).verdict, Pass);
        assert_eq!(decide_noop(below, keep, 80, 1, 0).verdict, Fail);
        assert_eq!(decide_noop("", keep, 80, 0, 0).verdict, Fail);
        let above = "ci-docker-prune: / at 85% (≥ 80%)";
        assert_eq!(decide_noop(above, keep, 80, 0, 0).verdict, Skip);
        // a unit deployed with --threshold 0 prunes on every run: that is a failure, not a skip
        let forced = "ci-docker-prune: / at 31% (≥ 0%)\nci-docker-prune: removed 2 images";
        let o = decide_noop(forced, keep, 80, 0, 0);
        assert_eq!(o.verdict, Fail);
        assert!(o.detail.contains("threshold of 0%"));
        let silent = "ci-docker-prune: pruned 3 images";
        assert_eq!(decide_noop(silent, keep, 80, 0, 0).verdict, Fail);
    }
}
