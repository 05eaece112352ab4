//! `prune.*`: what the deployed prune does and asks for. `prune.noop-below-threshold` runs the
//! deployed service for real and reads its decision from the journal;
//! `prune.never-all-never-volumes` reads the deployed command line and config against the one
//! rule in [`crate::never_all`]; `prune.keeps-deployed-images` reads what the shared probe's
//! dry run listed ([`crate::probe`]). The deployed prune itself is reached through
//! [`crate::deployed`].

use crate::cache::{error_before, with_probe};
use crate::deployed;
use crate::never_all::find_forbidden;
use crate::probe::{same_id, ProbeRun};
use crate::{Ctx, DynCheck};
use async_trait::async_trait;
use ccci_core::{short, Check, Decided, Evidence, Halt, Outcome, Trail};
use ccci_host::docker_error::is_not_found;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub mod other_pruner;

pub fn checks() -> Vec<DynCheck> {
    let mut v: Vec<DynCheck> = vec![
        Arc::new(NoopBelowThreshold),
        Arc::new(NeverAllNeverVolumes),
        Arc::new(KeepsDeployedImages),
    ];
    v.extend(other_pruner::checks());
    v
}

/// A container as the noop check saw it before the prune's run: what tells whether someone
/// other than the prune removes it (a host that keeps working removes containers of its own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeenContainer {
    pub id: String,
    pub name: String,
    /// Its state when the run started (`running`, `exited`, …).
    pub state: String,
    /// Started with `--rm` (`HostConfig.AutoRemove`): the daemon removes it when it exits.
    pub auto_remove: bool,
    /// The swarm task it runs (`com.docker.swarm.task.id`), if any.
    pub task: Option<String>,
}

/// What the store held at one moment: image ids, and the containers by id.
type StoreSnapshot = (BTreeSet<String>, BTreeMap<String, SeenContainer>);

/// Ids of every image, and every container with what attributes its removal, and the evidence
/// of the listing. A stopped container is inspected for `AutoRemove` (one that is gone by then
/// is left out: it went before the run).
async fn store_snapshot(ctx: &Ctx, t: &mut Trail, when: &str) -> Result<StoreSnapshot, Halt> {
    let docker = ctx.docker().await?;
    let images = docker
        .list_images(Some(bollard::query_parameters::ListImagesOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .map_err(|e| Halt::error(format!("GET /images/json: {e}")))?
        .into_iter()
        .map(|i| i.id)
        .collect::<BTreeSet<String>>();
    let list = docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .map_err(|e| Halt::error(format!("GET /containers/json: {e}")))?;
    let mut containers = BTreeMap::new();
    let mut inspected = 0;
    for c in list {
        let Some(id) = c.id else { continue };
        let state = c.state.map(|s| s.to_string()).unwrap_or_default();
        let stopped = matches!(state.as_str(), "created" | "exited" | "dead");
        let auto_remove = if stopped {
            inspected += 1;
            match docker.inspect_container(&id, None).await {
                Ok(i) => i.host_config.and_then(|h| h.auto_remove).unwrap_or(false),
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(Halt::error(format!("GET /containers/{id}/json: {e}"))),
            }
        } else {
            false
        };
        containers.insert(
            id.clone(),
            SeenContainer {
                name: c
                    .names
                    .unwrap_or_default()
                    .first()
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                task: c
                    .labels
                    .unwrap_or_default()
                    .get("com.docker.swarm.task.id")
                    .cloned(),
                id,
                state,
                auto_remove,
            },
        );
    }
    t.api(
        format!("GET /images/json?all=1; GET /containers/json?all=1 ({when})"),
        format!(
            "{} images, {} containers ({inspected} stopped ones inspected for AutoRemove)",
            images.len(),
            containers.len()
        ),
    );
    Ok((images, containers))
}

/// Split the containers gone during the prune's run into those the prune may have removed
/// and those the host's own work removed, each with why: a container that was not stopped
/// when the run started (a prune removes only stopped ones, and never forces), one started
/// with `--rm` (the daemon removes it when it exits), one whose swarm task is gone too (swarm
/// trims a service's task history). `live_tasks` is `None` when the tasks could not be listed:
/// then no task container is attributed to swarm.
pub fn attribute_gone(
    gone: &[SeenContainer],
    live_tasks: Option<&BTreeSet<String>>,
) -> (Vec<String>, Vec<String>) {
    let mut prune = Vec::new();
    let mut others = Vec::new();
    for c in gone {
        let what = format!("{} ({})", c.name, short(&c.id));
        let why = if !matches!(c.state.as_str(), "created" | "exited" | "dead") {
            Some(format!(
                "was {} when the run started: a prune removes only stopped containers",
                c.state
            ))
        } else if c.auto_remove {
            Some("started with --rm: the daemon removes it when it exits".to_string())
        } else {
            match (&c.task, live_tasks) {
                (Some(task), Some(live)) if !live.contains(task) => Some(format!(
                    "its swarm task {} is gone too: swarm trimmed the service's task history",
                    short(task)
                )),
                _ => None,
            }
        };
        match why {
            Some(why) => others.push(format!("{what}: {why}")),
            None => prune.push(format!("{what}, {}", c.state)),
        }
    }
    (prune, others)
}

/// The last disk decision in `text`: `<path> at N% (< T%)` or `(≥ T%)`, as (usage, threshold).
pub fn disk_decision(text: &str) -> Option<(u32, u32)> {
    let re = regex::Regex::new(r"at (\d+)% \((<|≥) (\d+)%").expect("static regex");
    let c = re.captures_iter(text).last()?;
    Some((c[1].parse().ok()?, c[3].parse().ok()?))
}

/// The disk gate of the deployed prune's dry run, open (the disk is at or above its
/// threshold): a threshold other than the gate's is a failure naming both, the gate's own
/// threshold reached is "cannot be shown now" (a skip, which fails the gate all the same).
pub fn decide_disk_open(detail: &str, expected_threshold: u8) -> Halt {
    match disk_decision(detail) {
        Some((_, threshold)) if threshold != u32::from(expected_threshold) => Halt::fail(format!(
            "the deployed prune uses a threshold of {threshold}%, the gate expects {expected_threshold}%: its dry run says {detail}"
        )),
        _ => Halt::skip(format!(
            "the disk is at or above the threshold now ({detail}), so a below-threshold run cannot be shown; the real prune was not started"
        )),
    }
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
    // the last disk decision of the run (the journal window may reach back a little)
    if let Some((usage, threshold)) = disk_decision(&decision) {
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
        let mut t = Trail::new();
        let r = noop(ctx, &mut t).await;
        t.conclude(r)
    }
}

async fn noop(ctx: &Ctx, t: &mut Trail) -> Decided {
    let svc = ctx.params.prune_service.as_str();
    // first ask the deployed prune, in a dry run, whether the disk is below its threshold:
    // a reviewer's run must never make a real prune remove anything
    let argv = deployed::argv(ctx, t).await?;
    let dry = deployed::with_flags(&argv, &[], &["--dry-run", "--json"]);
    let report = deployed::run_json_as_unit(ctx, t, &dry)
        .await
        .map_err(|h| Halt::fail(format!("{}: not run for real", h.detail)))?;
    if let Some(d) = report.gate("disk").filter(|d| d.pass) {
        return Err(decide_disk_open(&d.detail, ctx.params.threshold));
    }
    let before = store_snapshot(ctx, t, "before").await?;
    // the host's clock marks the start: the journal is read from there (stdout lines of a
    // unit carry no invocation id on every systemd, e.g. under cgroup v1)
    let now = ctx.cmd(t, &["date", "+%s.%N"]).await.ok();
    let since = now
        .map(|o| o.stdout_str().trim().to_string())
        .filter(|s| s.parse::<f64>().is_ok())
        .map(|s| format!("@{s}"))
        .ok_or_else(|| Halt::error("cannot read the target's clock (`date +%s.%N`)"))?;
    let out = ctx
        .cmd(t, &["systemctl", "start", svc])
        .await
        .map_err(|_| Halt::error(format!("cannot start {svc}")))?;
    let log = ctx
        .cmd(
            t,
            &[
                "journalctl",
                "--no-pager",
                "-o",
                "cat",
                "-u",
                svc,
                "--since",
                &since,
            ],
        )
        .await
        .map(|o| o.stdout_str())
        .unwrap_or_default();
    let after = store_snapshot(ctx, t, "after").await?;
    let gone_images = before.0.difference(&after.0).count();
    let gone: Vec<SeenContainer> = before
        .1
        .iter()
        .filter(|(id, _)| !after.1.contains_key(*id))
        .map(|(_, c)| c.clone())
        .collect();
    // a busy host removes containers of its own during the run: attribute each one
    let live_tasks = if gone.iter().any(|c| c.task.is_some()) {
        let docker = ctx.docker().await?;
        match docker
            .list_tasks(None::<bollard::query_parameters::ListTasksOptions>)
            .await
        {
            Ok(tasks) => Some(tasks.into_iter().filter_map(|t| t.id).collect()),
            Err(e) => {
                t.note(
                    "GET /tasks",
                    format!("{e}: no gone task container is attributed to swarm"),
                );
                None
            }
        }
    } else {
        None
    };
    let (by_prune, by_others) = attribute_gone(&gone, live_tasks.as_ref());
    let gone_containers = by_prune.len();
    let mut lines = vec![format!(
        "{gone_images} images; {} containers, {gone_containers} of them possibly by the prune",
        gone.len()
    )];
    lines.extend(
        by_prune
            .iter()
            .map(|c| format!("possibly the prune's: {c}")),
    );
    lines.extend(by_others.iter().map(|c| format!("not the prune's: {c}")));
    t.note("gone during the run", lines.join("\n"));
    if !out.ok() {
        return Err(Halt::fail(format!(
            "`systemctl start {svc}` exited {}: the run failed",
            out.status
        )));
    }
    Ok(decide_noop(
        &log,
        &ctx.params.keep_line,
        ctx.params.threshold,
        gone_images,
        gone_containers,
    ))
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
        let mut t = Trail::new();
        let r = never_all_never_volumes(ctx, &mut t).await;
        t.conclude(r)
    }
}

/// Shells whose `-c` string is a script the check reads as text.
const SHELLS: &[&str] = &["sh", "bash", "dash", "ash", "zsh", "ksh", "busybox"];

/// What the check can see of one command line: its argv, and the texts it runs or reads
/// (a `-c` script, a script file, a `--config` file) to be named for reading.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CommandView {
    /// Texts given inline (`sh -c '…'`), as (name, text).
    pub inline: Vec<(String, String)>,
    /// Files the command runs or reads: a wrapper program or script, `--config` files.
    pub files: Vec<String>,
}

/// Split one command line into what can be read directly and what must be fetched.
pub fn view_command(property: &str, argv: &[String]) -> CommandView {
    let mut v = CommandView::default();
    let prog = argv.first().cloned().unwrap_or_default();
    let name = prog.rsplit('/').next().unwrap_or(&prog);
    for (i, a) in argv.iter().enumerate() {
        if a == "--config" {
            if let Some(f) = argv.get(i + 1) {
                v.files.push(f.clone());
            }
        } else if let Some(f) = a.strip_prefix("--config=") {
            v.files.push(f.to_string());
        }
    }
    if name == "ci-docker-prune" || name == "docker" {
        return v;
    }
    if SHELLS.contains(&name) {
        // systemd shows argv joined by spaces, so a `-c` script is the rest of the line
        if let Some(pos) = argv.iter().position(|a| a == "-c") {
            v.inline
                .push((format!("{property} -c"), argv[pos + 1..].join(" ")));
            return v;
        }
        // `sh SCRIPT`: the script file
        if let Some(script) = argv[1..].iter().find(|a| !a.starts_with('-')) {
            v.files.push(script.clone());
            return v;
        }
    }
    // some other program: a wrapper script, or a binary the check cannot see into
    v.files.push(prog);
    v
}

/// Lines of a script a prune runs that a static read cannot resolve: a prune whose words come
/// from a variable or a command substitution (`docker system prune $FLAGS`, `` `…` ``), or an
/// `eval`, which can build any command. They are "cannot prove", never a pass.
pub fn unprovable_script_lines(texts: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, text) in texts {
        for (n, line) in text.lines().enumerate() {
            let code = line.split('#').next().unwrap_or("");
            let words: Vec<&str> = code
                .split(|c: char| c.is_whitespace() || c == ';' || c == '(' || c == ')')
                .collect();
            let prunes = words.contains(&"prune") || code.contains("/prune");
            let expands = code.contains('$') || code.contains('`');
            if (prunes && expands) || words.contains(&"eval") {
                out.push(format!(
                    "{name}:{}: what this line runs depends on the shell's expansion at run time, so it cannot be proven: {}",
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    out
}

async fn never_all_never_volumes(ctx: &Ctx, t: &mut Trail) -> Decided {
    let svc = ctx.params.prune_service.as_str();
    let state = ctx.unit_state(t, svc).await?;
    if !state.is_loaded() {
        return Err(Halt::fail(format!(
            "{svc} is not loaded (LoadState={}): nothing deployed to examine",
            state.load_state
        )));
    }
    // every command systemd may run for the service, drop-ins included
    let props = ccci_host::EXEC_PROPERTIES.join(",");
    let out = ctx
        .cmd(t, &["systemctl", "show", "-p", &props, "--", svc])
        .await?;
    if !out.ok() {
        return Err(Halt::error(format!(
            "`systemctl show -p {props}` exited {}",
            out.status
        )));
    }
    let lines = ccci_host::parse_exec_lines(&out.stdout_str());
    if lines.is_empty() {
        return Err(Halt::fail(format!("{svc} has no command (no Exec* line)")));
    }
    // what systemd substitutes for `$VAR`/`${VAR}`: the unit's Environment= and
    // EnvironmentFile=; a variable they do not set cannot be proven
    let env = crate::unit_env::read(ctx, t, svc).await?;
    if !env.vars.is_empty() {
        t.note(
            format!("{svc}: the environment its commands are expanded with"),
            env.vars
                .iter()
                .map(|(k, v)| crate::unit_env::shown(ctx, k, v))
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
    let mut found = Vec::new();
    let mut unseen = Vec::new();
    let mut expanded_lines = Vec::new();
    for line in &lines {
        let argv = match crate::unit_env::expand_argv(&line.argv, &env.vars) {
            Ok(a) => a,
            Err(e) => {
                unseen.push(format!("{}: {e}", line.property));
                continue;
            }
        };
        if argv != line.argv {
            expanded_lines.push(format!("{}={}", line.property, argv.join(" ")));
        }
        let view = view_command(&line.property, &argv);
        let mut texts = view.inline.clone();
        for f in view.files {
            match ctx.target.read_file(&f).await {
                Ok(Some(bytes)) => {
                    let looks_text = bytes.iter().take(4096).all(|b| *b != 0);
                    if looks_text {
                        let text = String::from_utf8_lossy(&bytes).into_owned();
                        t.push(Evidence::new(format!("cat -- {f}"), Some(0), text.clone()));
                        texts.push((f, text));
                    } else {
                        t.push(Evidence::new(
                            format!("cat -- {f}"),
                            Some(0),
                            format!("({} bytes, binary)", bytes.len()),
                        ));
                        unseen.push(format!(
                            "{}: `{f}` is a binary that is neither ci-docker-prune nor docker; what it asks the daemon for cannot be read",
                            line.property
                        ));
                    }
                }
                Ok(None) => {
                    found.push(format!(
                        "{}: the unit names {f}, which does not exist",
                        line.property
                    ));
                }
                Err(e) => return Err(Halt::error(format!("cannot read {f}: {e}"))),
            }
        }
        unseen.extend(
            unprovable_script_lines(&texts)
                .into_iter()
                .map(|m| format!("{}: {m}", line.property)),
        );
        found.extend(
            find_forbidden(&argv, &texts)
                .into_iter()
                .map(|m| format!("{}: {m}", line.property)),
        );
    }
    if !expanded_lines.is_empty() {
        t.note(
            "the command lines as systemd runs them (variables substituted)",
            expanded_lines.join("\n"),
        );
    }
    let shown: Vec<String> = lines
        .iter()
        .map(|l| format!("{}={}", l.property, l.argv.join(" ")))
        .collect();
    if !found.is_empty() {
        return Ok(Outcome::fail(found.join("; ")));
    }
    if !unseen.is_empty() {
        return Ok(Outcome::error(format!(
            "not every command could be read, so \"never --all, never volumes\" is not shown: {}",
            unseen.join("; ")
        )));
    }
    Ok(Outcome::pass(format!(
        "{} command line(s) ask for no --all and no volumes: `{}`",
        lines.len(),
        shown.join("`, `")
    )))
}

/// Decision of `prune.keeps-deployed-images` from the probe's facts: the image survived the
/// teardown, the dry run got past its gates, and it does not list the image.
pub fn decide_keeps_deployed(p: &ProbeRun) -> Outcome {
    let Some(id) = &p.image_id else {
        return error_before(p, "the dry run");
    };
    match &p.after_teardown {
        Some(Some(_)) => {}
        Some(None) => {
            return with_probe(
                p,
                Outcome::fail(format!(
                    "image {} was already gone after the teardown, before the prune ran",
                    short(id)
                )),
            )
        }
        None => return error_before(p, "the dry run"),
    }
    let Some(dr) = &p.dry_run else {
        return with_probe(
            p,
            Outcome::error("the deployed prune's dry run gave no report".to_string()),
        );
    };
    if dr.outcome != "dry-run" {
        return with_probe(
            p,
            Outcome::error(format!(
                "the dry run did not get past its gates (outcome {}, skipped by {}): cannot show what it would remove",
                dr.outcome,
                dr.skipped_by.clone().unwrap_or_default()
            )),
        );
    }
    let listed = &dr.removed.images;
    if listed.iter().any(|i| same_id(i, id)) {
        return with_probe(
            p,
            Outcome::fail(format!(
                "the deployed prune would delete the probe's image {} (a cached pull left untagged by swarm): {} candidate image(s)",
                short(id),
                listed.len()
            )),
        );
    }
    // not listed: that shows the prune keeps an untagged cached pull only when nothing else
    // keeps it — no container uses it (a prune never removes an image in use) and it has no tag
    let users = match &p.image_users {
        Ok(u) => u,
        Err(e) => {
            return with_probe(
                p,
                Outcome::error(format!(
                    "cannot tell whether a container uses the probe's image {}, so its absence from the dry run shows nothing: {e}",
                    short(id)
                )),
            )
        }
    };
    let tags = match &p.tags {
        Ok(t) => t,
        Err(e) => {
            return with_probe(
                p,
                Outcome::error(format!(
                    "cannot tell whether the probe's image {} is tagged, so its absence from the dry run shows nothing: {e}",
                    short(id)
                )),
            )
        }
    };
    let o = if !users.is_empty() {
        Outcome::skip(format!(
            "the dry run does not list the probe's image {}, but {} container(s) use it ({}), and a prune never removes an image a container uses (the daemon's own dangling prune keeps it too), so that shows nothing about the prune; remove those containers and run the gate again",
            short(id),
            users.len(),
            users.join(", ")
        ))
    } else if !tags.is_empty() {
        // a tagged image is kept for its tag: the untagged case was not exercised
        Outcome::skip(format!(
            "the dry run does not list the probe's image {}, but the image also carries {} from an earlier pull by tag, so that only shows a tagged image is kept, not an untagged cached pull; remove the tag (`docker image rm {}`: the next deploy pulls it again by digest, untagged, as swarm leaves it) and run the gate again",
            short(id),
            tags.join(", "),
            tags[0]
        ))
    } else {
        Outcome::pass(format!(
            "the dry run lists {} image(s), not the probe's {} (untagged, as swarm left it, and used by no container)",
            listed.len(),
            short(id)
        ))
    };
    with_probe(p, o)
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
        decide_keeps_deployed(crate::probe::get(ctx).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn a_prune_built_by_the_shell_at_run_time_cannot_be_proven() {
        let t = |text: &str| vec![("/x.sh".to_string(), text.to_string())];
        for bad in [
            "docker system prune $FLAGS",
            "docker image prune `cat /etc/flags`",
            "docker system prune -f $(echo --all)",
            "eval \"$CMD\"",
        ] {
            assert_eq!(unprovable_script_lines(&t(bad)).len(), 1, "{bad}");
        }
        for fine in [
            "docker image prune -f",
            "ids=$(docker images -q) # prune later",
            "echo $HOME",
        ] {
            assert!(unprovable_script_lines(&t(fine)).is_empty(), "{fine}");
        }
    }

    #[test]
    fn what_a_command_line_shows_and_hides() {
        // the prune and docker themselves: argv is all there is (and --config files)
        let v = view_command(
            "ExecStart",
            &s(&["/usr/local/bin/ci-docker-prune", "--config", "/etc/p.toml"]),
        );
        assert_eq!(v.files, s(&["/etc/p.toml"]));
        assert!(v.inline.is_empty());
        assert_eq!(
            view_command("ExecStart", &s(&["/usr/bin/docker", "image", "prune"])),
            CommandView::default()
        );
        // a shell's -c string is read as a script
        let v = view_command(
            "ExecStartPost",
            &s(&[
                "/bin/sh", "-c", "true", ";", "docker", "system", "prune", "-af",
            ]),
        );
        assert_eq!(v.inline.len(), 1);
        assert_eq!(v.inline[0].1, "true ; docker system prune -af");
        assert!(!find_forbidden(&s(&["/bin/sh"]), &v.inline).is_empty());
        // `bash script.sh` and a bare wrapper: files to read
        assert_eq!(
            view_command("ExecStart", &s(&["/bin/bash", "-e", "/usr/local/bin/p.sh"])).files,
            s(&["/usr/local/bin/p.sh"])
        );
        assert_eq!(
            view_command("ExecStart", &s(&["/usr/local/bin/wrap", "x"])).files,
            s(&["/usr/local/bin/wrap"])
        );
    }

    #[test]
    fn keeps_deployed_decisions() {
        use crate::probe::sample;
        use ccci_core::Verdict::*;
        let v = |after: Option<Option<&str>>, dry: Option<Vec<&str>>| {
            decide_keeps_deployed(&sample(after, dry)).verdict
        };
        assert_eq!(
            v(Some(Some("sha256:aaaa")), Some(vec!["sha256:bbbb"])),
            Pass
        );
        assert_eq!(
            v(Some(Some("sha256:aaaa")), Some(vec!["sha256:aaaa"])),
            Fail
        );
        // listed without the prefix: the same image
        assert_eq!(v(Some(Some("sha256:aaaa")), Some(vec!["aaaa"])), Fail);
        assert_eq!(v(Some(None), Some(vec![])), Fail);
        // no report, or one that did not get past its gates: cannot show it, never a pass
        assert_eq!(v(Some(Some("sha256:aaaa")), None), Error);
        let mut p = sample(Some(Some("sha256:aaaa")), Some(vec![]));
        if let Some(d) = p.dry_run.as_mut() {
            d.outcome = "skipped".into();
            d.skipped_by = Some("runs".into());
        }
        let o = decide_keeps_deployed(&p);
        assert_eq!(o.verdict, Error);
        assert!(o.detail.contains("skipped by runs"), "{}", o.detail);
        // a tagged image not listed: the untagged case was not exercised, never a pass
        let mut p = sample(Some(Some("sha256:aaaa")), Some(vec![]));
        p.tags = Ok(vec!["redis:7-alpine".into()]);
        let o = decide_keeps_deployed(&p);
        assert_eq!(o.verdict, Skip);
        assert!(
            o.detail.contains("docker image rm redis:7-alpine"),
            "{}",
            o.detail
        );
        // a tagged image listed is a failure all the same
        let mut p = sample(Some(Some("sha256:aaaa")), Some(vec!["sha256:aaaa"]));
        p.tags = Ok(vec!["redis:7-alpine".into()]);
        assert_eq!(decide_keeps_deployed(&p).verdict, Fail);
        // issue 18 item 6: another container uses the image (the daemon's prune keeps an
        // image in use): not listed shows nothing, never a pass; listed is still a failure
        let mut p = sample(Some(Some("sha256:aaaa")), Some(vec![]));
        p.image_users = Ok(vec!["other (0123, exited)".into()]);
        let o = decide_keeps_deployed(&p);
        assert_eq!(o.verdict, Skip);
        assert!(o.detail.contains("other (0123, exited)"), "{}", o.detail);
        let mut p = sample(Some(Some("sha256:aaaa")), Some(vec!["sha256:aaaa"]));
        p.image_users = Ok(vec!["other (0123, exited)".into()]);
        assert_eq!(decide_keeps_deployed(&p).verdict, Fail);
        // the image or the containers could not be read: an error, never a pass
        let mut p = sample(Some(Some("sha256:aaaa")), Some(vec![]));
        p.tags = Err("GET /images/sha256:aaaa/json: 500 boom".into());
        let o = decide_keeps_deployed(&p);
        assert_eq!(o.verdict, Error);
        assert!(o.detail.contains("500 boom"), "{}", o.detail);
        let mut p = sample(Some(Some("sha256:aaaa")), Some(vec![]));
        p.image_users = Err("GET /containers/json?all=1: 500 boom".into());
        assert_eq!(decide_keeps_deployed(&p).verdict, Error);
    }

    #[test]
    fn containers_gone_during_the_run_are_attributed() {
        let c = |id: &str, state: &str, auto_remove: bool, task: Option<&str>| SeenContainer {
            id: id.into(),
            name: format!("n-{id}"),
            state: state.into(),
            auto_remove,
            task: task.map(String::from),
        };
        let gone = vec![
            c("a1", "running", false, None),
            c("b2", "exited", true, None),
            c("c3", "exited", false, Some("t-gone")),
            c("d4", "exited", false, Some("t-live")),
            c("e5", "exited", false, None),
            c("f6", "created", false, None),
        ];
        let live: BTreeSet<String> = ["t-live".to_string()].into();
        let (prune, others) = attribute_gone(&gone, Some(&live));
        assert_eq!(
            prune,
            vec![
                "n-d4 (d4), exited",
                "n-e5 (e5), exited",
                "n-f6 (f6), created"
            ]
        );
        assert_eq!(others.len(), 3, "{others:?}");
        assert!(others[0].starts_with("n-a1 (a1): was running"));
        assert!(others[1].contains("--rm"));
        assert!(others[2].contains("task t-gone is gone too"));
        // tasks not listed: a task container is never put down to swarm
        let (prune, _) = attribute_gone(&gone, None);
        assert_eq!(prune.len(), 4);
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
        // the dry run's open disk gate: the gate's threshold reached is a skip, a deployed
        // threshold below the usage is a failure naming it
        let h = decide_disk_open("/ at 85% (≥ 80%)", 80);
        assert_eq!(h.verdict, Skip);
        let h = decide_disk_open("/ at 31% (≥ 10%)", 80);
        assert_eq!(h.verdict, Fail);
        assert!(
            h.detail.contains("threshold of 10%") && h.detail.contains("80%"),
            "{}",
            h.detail
        );
    }
}
