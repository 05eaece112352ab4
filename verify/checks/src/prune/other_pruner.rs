//! `prune.no-other-pruner`: nothing on the host but the prune itself removes images or
//! volumes. Examined: every system service systemd knows (loaded, transient, generated, or an
//! installed unit file; a timer or a `systemd-run --on-calendar` runs a service, so its
//! service is examined), every user unit file, every cron source, and every running container
//! that mounts the Docker socket. Exempt: the prune's own service and, on NixOS, the
//! platform's units that nothing pulls in (nixpkgs' docker module's inert
//! `docker-prune.service`). What cannot be read is an error, never a pass.
//!
//! A command is judged by its words: a program that is Docker's CLI (or podman, nerdctl), a
//! shell's `-c` script, or a script file (read, line by line). A binary that is none of these
//! cannot be seen into and is not judged (its name is in the evidence count).

use crate::{Ctx, DynCheck};
use async_trait::async_trait;
use ccci_core::{Check, Decided, Evidence, Halt, Outcome, Trail};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub fn checks() -> Vec<DynCheck> {
    vec![Arc::new(NoOtherPruner)]
}

/// Programs that talk to a container engine's image store.
const ENGINE_CLIS: &[&str] = &["docker", "podman", "nerdctl", "docker-compose"];
/// Shells whose `-c` string is read as a script.
const SHELLS: &[&str] = &["sh", "bash", "dash", "ash", "zsh", "ksh", "busybox"];

/// Why a line of words removes images or volumes, or `None`. Expected by hand from Docker's
/// CLI: `rmi`, `image rm|remove|prune`, `system prune` (images, even dangling-only: on the
/// legacy store that deletes swarm-pulled cache), `volume rm|remove|prune`, `compose down
/// --rmi`, the API's `/images/prune`, `/volumes/prune`, `DELETE …/images/…`, and watchtower's
/// `--cleanup`. Only lines that name an engine (its CLI, its socket, its API) are judged.
pub fn removes(words: &[&str]) -> Option<&'static str> {
    let base = |w: &str| w.rsplit('/').next().unwrap_or(w).to_string();
    let engine = words.iter().any(|w| {
        let b = base(w);
        ENGINE_CLIS.contains(&b.as_str())
            || w.contains("docker.sock")
            || w.contains("/images/")
            || w.contains("/volumes/")
            || b.contains("watchtower")
    });
    if !engine {
        return None;
    }
    let lw: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let pair = |a: &[&str], b: &[&str]| {
        lw.windows(2)
            .any(|p| a.contains(&p[0].as_str()) && b.contains(&p[1].as_str()))
    };
    if lw.iter().any(|w| w == "rmi") || pair(&["image", "images"], &["rm", "remove", "prune"]) {
        return Some("removes images");
    }
    if pair(&["system"], &["prune"]) {
        return Some("removes images (system prune)");
    }
    if pair(&["volume", "volumes"], &["rm", "remove", "prune"]) {
        return Some("removes volumes");
    }
    if lw.iter().any(|w| w == "--rmi" || w.starts_with("--rmi=")) {
        return Some("removes images (--rmi)");
    }
    if lw
        .iter()
        .any(|w| w.contains("/images/prune") || w.contains("/volumes/prune"))
        || (lw.iter().any(|w| w == "delete" || w == "-xdelete")
            && lw.iter().any(|w| w.contains("/images/")))
    {
        return Some("asks the API to remove images or volumes");
    }
    if lw
        .iter()
        .any(|w| w == "--cleanup" || w.starts_with("--cleanup=") || w == "watchtower_cleanup=true")
    {
        return Some("removes images (watchtower --cleanup)");
    }
    None
}

/// The words of a shell line: split at whitespace and the shell's separators, quotes dropped.
fn line_words(line: &str) -> Vec<String> {
    let code = line.split(" #").next().unwrap_or(line);
    if code.trim_start().starts_with('#') {
        return vec![];
    }
    code.split(|c: char| c.is_whitespace() || ";|&()`".contains(c))
        .map(|w| w.trim_matches(|c| c == '"' || c == '\'').to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Findings in a script's text, `where:line: why: line`.
pub fn scan_text(name: &str, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let words = line_words(line);
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        if let Some(why) = removes(&refs) {
            out.push(format!("{name}:{}: {why}: {}", n + 1, line.trim()));
        }
    }
    out
}

/// One command to judge: where it is, and its argv.
struct Command {
    place: String,
    argv: Vec<String>,
}

/// What a command runs that must be read: a script file.
enum Needs {
    Nothing,
    File(String),
}

fn judge_argv(c: &Command, findings: &mut Vec<String>) -> Needs {
    let Some(prog) = c.argv.first() else {
        return Needs::Nothing;
    };
    let name = prog.rsplit('/').next().unwrap_or(prog);
    let words: Vec<&str> = c.argv.iter().map(String::as_str).collect();
    if let Some(why) = removes(&words) {
        findings.push(format!("{}: {why}: `{}`", c.place, c.argv.join(" ")));
        return Needs::Nothing;
    }
    if ENGINE_CLIS.contains(&name) {
        return Needs::Nothing;
    }
    if SHELLS.contains(&name) {
        if let Some(pos) = c.argv.iter().position(|a| a == "-c") {
            findings.extend(scan_text(
                &format!("{} -c", c.place),
                &c.argv[pos + 1..].join(" "),
            ));
            return Needs::Nothing;
        }
        if let Some(script) = c.argv[1..].iter().find(|a| !a.starts_with('-')) {
            return Needs::File(script.clone());
        }
        return Needs::Nothing;
    }
    // any other program: a script is read, a binary cannot be
    Needs::File(prog.clone())
}

/// Read many files through one command: each file's first bytes decide whether it is a
/// script (`#!` or text, read) or a binary (not read). Returns path → `Some(text)` for a
/// script, `None` for a binary; a file that cannot be read is an error naming it.
async fn read_scripts(
    ctx: &Ctx,
    t: &mut Trail,
    files: &BTreeSet<String>,
) -> Result<BTreeMap<String, Option<String>>, Halt> {
    let mut out = BTreeMap::new();
    if files.is_empty() {
        return Ok(out);
    }
    let nonce = format!("ccci-{:x}", std::process::id() ^ 0x5eed);
    // `grep -I` skips a binary file: a file it reads (or an empty one) is text
    let script = format!(
        "for f; do printf '\\n{nonce} %s\\n' \"$f\"; if [ ! -e \"$f\" ]; then echo missing; elif [ ! -r \"$f\" ]; then echo unreadable; elif grep -qI '' \"$f\" || [ ! -s \"$f\" ]; then echo text; cat \"$f\"; else echo binary; fi; done"
    );
    let mut argv = vec!["sh".to_string(), "-c".into(), script, "sh".into()];
    argv.extend(files.iter().cloned());
    let mut scratch = Trail::new();
    let o = ctx.cmd_owned(&mut scratch, &argv).await?;
    if !o.ok() {
        return Err(Halt::error(format!(
            "reading the scripts the host's units and cron run exited {}",
            o.status
        )));
    }
    let text = o.stdout_str();
    let mut cur: Option<(String, String, Vec<&str>)> = None;
    let finish = |cur: Option<(String, String, Vec<&str>)>,
                  out: &mut BTreeMap<String, Option<String>>|
     -> Result<(), Halt> {
        if let Some((path, kind, body)) = cur {
            match kind.as_str() {
                "text" => {
                    out.insert(path, Some(body.join("\n")));
                }
                "binary" => {
                    out.insert(path, None);
                }
                "missing" => {
                    // a unit naming a program that is not there does not run it
                    out.insert(path, Some(String::new()));
                }
                _ => {
                    return Err(Halt::error(format!(
                        "cannot read {path} (what it runs cannot be shown)"
                    )))
                }
            }
        }
        Ok(())
    };
    for line in text.lines() {
        if let Some(path) = line.strip_prefix(&format!("{nonce} ")) {
            finish(cur.take(), &mut out)?;
            cur = Some((path.to_string(), String::new(), Vec::new()));
        } else if let Some((_, kind, body)) = cur.as_mut() {
            if kind.is_empty() {
                *kind = line.to_string();
            } else {
                body.push(line);
            }
        }
    }
    finish(cur.take(), &mut out)?;
    let (scripts, binaries) = out.values().fold((0, 0), |(s, b), v| match v {
        Some(_) => (s + 1, b),
        None => (s, b + 1),
    });
    t.note(
        "programs and cron scripts read on the host",
        format!("{scripts} script(s) read, {binaries} binary program(s) not judged (cannot be seen into)"),
    );
    Ok(out)
}

/// The system services systemd knows: loaded ones (transient and generated included) and
/// installed unit files; templates are judged through their instances.
async fn system_services(ctx: &Ctx, t: &mut Trail) -> Result<Vec<String>, Halt> {
    let mut names = BTreeSet::new();
    for argv in [
        &[
            "systemctl",
            "list-units",
            "--all",
            "--type=service",
            "--plain",
            "--no-legend",
            "--no-pager",
        ][..],
        &[
            "systemctl",
            "list-unit-files",
            "--type=service",
            "--no-legend",
            "--no-pager",
        ][..],
    ] {
        let mut scratch = Trail::new();
        let o = ctx.cmd(&mut scratch, argv).await?;
        if !o.ok() {
            return Err(Halt::error(format!(
                "`{}` exited {}",
                argv.join(" "),
                o.status
            )));
        }
        for l in o.stdout_str().lines() {
            // list-units marks a failed unit with `●` in front
            let first = l
                .split_whitespace()
                .find(|w| *w != "●" && *w != "*")
                .unwrap_or("");
            if first.ends_with(".service") && !first.ends_with("@.service") {
                names.insert(first.to_string());
            }
        }
    }
    t.note(
        "systemctl list-units --all --type=service; systemctl list-unit-files --type=service",
        format!("{} service(s)", names.len()),
    );
    Ok(names.into_iter().collect())
}

/// Each service's commands, from one `systemctl show` of all of them.
async fn service_commands(
    ctx: &Ctx,
    services: &[String],
) -> Result<Vec<(String, Vec<Vec<String>>, String)>, Halt> {
    let mut out = Vec::new();
    for chunk in services.chunks(200) {
        let props = format!("Id,FragmentPath,{}", ccci_host::EXEC_PROPERTIES.join(","));
        let mut argv = vec![
            "systemctl".to_string(),
            "show".into(),
            "-p".into(),
            props,
            "--".into(),
        ];
        argv.extend(chunk.iter().cloned());
        let mut scratch = Trail::new();
        let o = ctx.cmd_owned(&mut scratch, &argv).await?;
        if !o.ok() {
            return Err(Halt::error(format!(
                "`systemctl show` of {} service(s) exited {}",
                chunk.len(),
                o.status
            )));
        }
        let text = o.stdout_str();
        let mut blocks: Vec<String> = Vec::new();
        let mut cur = String::new();
        for l in text.lines() {
            if l.trim().is_empty() {
                if !cur.is_empty() {
                    blocks.push(std::mem::take(&mut cur));
                }
            } else {
                cur.push_str(l);
                cur.push('\n');
            }
        }
        if !cur.is_empty() {
            blocks.push(cur);
        }
        for b in blocks {
            let id = b
                .lines()
                .find_map(|l| l.strip_prefix("Id="))
                .unwrap_or("")
                .to_string();
            let frag = b
                .lines()
                .find_map(|l| l.strip_prefix("FragmentPath="))
                .unwrap_or("")
                .to_string();
            let cmds = ccci_host::parse_exec_lines(&b)
                .into_iter()
                .map(|l| l.argv)
                .collect();
            out.push((id, cmds, frag));
        }
    }
    Ok(out)
}

/// Units that nothing pulls in, among `names` (NixOS's inert platform units).
async fn inert(ctx: &Ctx, t: &mut Trail, names: &[String]) -> Result<BTreeSet<String>, Halt> {
    let mut out = BTreeSet::new();
    for n in names {
        let mut argv: Vec<String> = ccci_host::target::show_argv(&[n.as_str()]);
        // ask for what pulls it in
        if let Some(p) = argv.iter().position(|a| a == "-p") {
            argv[p + 1] = ccci_host::PULLED_IN_PROPERTIES.join(",");
        }
        let o = ctx.cmd_owned(t, &argv).await?;
        let states = ccci_host::parse_show(&o.stdout_str(), &[n.as_str()])
            .map_err(|e| Halt::error(format!("cannot read {n}: {e}")))?;
        if states.first().is_some_and(|s| s.pulled_in_by().is_empty()) {
            out.insert(n.clone());
        }
    }
    Ok(out)
}

/// Files under the user unit directories and the cron sources.
async fn list_files(
    ctx: &Ctx,
    t: &mut Trail,
    what: &str,
    script: &str,
) -> Result<Vec<String>, Halt> {
    let o = ctx.cmd(t, &["sh", "-c", script]).await?;
    if !o.ok() {
        return Err(Halt::error(format!(
            "listing the {what} exited {}",
            o.status
        )));
    }
    Ok(o.stdout_str()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

const USER_UNITS: &str = "for d in /etc/systemd/user /usr/lib/systemd/user /lib/systemd/user /usr/local/lib/systemd/user /root/.config/systemd/user /home/*/.config/systemd/user; do [ -d \"$d\" ] && find -L \"$d\" -name '*.service' -type f 2>/dev/null; done; true";
const CRON: &str = "for f in /etc/crontab /etc/anacrontab /etc/cron.d/* /etc/cron.hourly/* /etc/cron.daily/* /etc/cron.weekly/* /etc/cron.monthly/* /var/spool/cron/crontabs/* /var/spool/cron/*; do [ -f \"$f\" ] && echo \"$f\"; done; true";

/// Running containers that mount the Docker socket, with their command and environment.
async fn socket_containers(ctx: &Ctx, t: &mut Trail) -> Result<Vec<Command>, Halt> {
    let docker = ctx.docker().await?;
    let list = docker
        .list_containers(None::<bollard::query_parameters::ListContainersOptions>)
        .await
        .map_err(|e| Halt::error(format!("GET /containers/json: {e}")))?;
    let mut out = Vec::new();
    for c in list {
        let socket: Vec<String> = c
            .mounts
            .unwrap_or_default()
            .iter()
            .filter_map(|m| {
                [&m.source, &m.destination]
                    .iter()
                    .find_map(|p| p.as_deref().filter(|p| p.ends_with("docker.sock")))
                    .map(String::from)
            })
            .collect();
        if socket.is_empty() {
            continue;
        }
        let id = c.id.unwrap_or_default();
        let name = c.names.unwrap_or_default().join(",");
        let i = docker
            .inspect_container(
                &id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| Halt::error(format!("GET /containers/{id}/json: {e}")))?;
        let cfg = i.config.unwrap_or_default();
        let mut argv: Vec<String> = cfg.entrypoint.unwrap_or_default();
        argv.extend(cfg.cmd.unwrap_or_default());
        // the environment as words too (WATCHTOWER_CLEANUP=true); values of secret-looking
        // names are not kept
        argv.extend(
            cfg.env
                .unwrap_or_default()
                .into_iter()
                .filter(|e| !crate::unit_env::secret_name(e.split('=').next().unwrap_or(""))),
        );
        argv.push(cfg.image.unwrap_or_default());
        // the socket it holds: its command and environment are judged as an engine client's
        argv.extend(socket);
        out.push(Command {
            place: format!(
                "container {name} ({}, mounts the Docker socket)",
                ccci_core::short(&id)
            ),
            argv,
        });
    }
    t.api(
        "GET /containers/json (running); GET /containers/{id}/json of those mounting docker.sock",
        format!("{} container(s) mount the Docker socket", out.len()),
    );
    Ok(out)
}

struct NoOtherPruner;
#[async_trait]
impl Check<Ctx> for NoOtherPruner {
    fn id(&self) -> &'static str {
        "prune.no-other-pruner"
    }
    fn title(&self) -> &'static str {
        "no system or user unit, transient unit, cron entry or container with the Docker socket, other than the prune itself and the platform's inert units, removes images or volumes"
    }
    async fn run(&self, ctx: &Ctx) -> Outcome {
        let mut t = Trail::new();
        let r = no_other_pruner(ctx, &mut t).await;
        t.conclude(r)
    }
}

async fn no_other_pruner(ctx: &Ctx, t: &mut Trail) -> Decided {
    let nixos = crate::repro::host_is_nixos(ctx, t).await?;
    let exempt_platform = if nixos {
        inert(ctx, t, &ctx.params.repro.platform_units).await?
    } else {
        BTreeSet::new()
    };
    let mut commands = Vec::new();
    let services = system_services(ctx, t).await?;
    let mut exempted = Vec::new();
    for (id, cmds, frag) in service_commands(ctx, &services).await? {
        if id == ctx.params.prune_service || exempt_platform.contains(&id) {
            exempted.push(id);
            continue;
        }
        for argv in cmds {
            commands.push(Command {
                place: format!(
                    "system service {id}{}",
                    if frag.is_empty() {
                        String::new()
                    } else {
                        format!(" ({frag})")
                    }
                ),
                argv,
            });
        }
    }
    t.note("exempt", exempted.join(", "));
    let user_files = list_files(ctx, t, "user unit files", USER_UNITS).await?;
    let cron_files = list_files(ctx, t, "cron sources", CRON).await?;
    commands.extend(socket_containers(ctx, t).await?);
    let mut findings = Vec::new();
    let mut to_read: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in &commands {
        if let Needs::File(f) = judge_argv(c, &mut findings) {
            to_read.entry(f).or_default().push(c.place.clone());
        }
    }
    let mut files: BTreeSet<String> = to_read.keys().cloned().collect();
    files.extend(user_files.iter().cloned());
    files.extend(cron_files.iter().cloned());
    let texts = read_scripts(ctx, t, &files).await?;
    for f in &user_files {
        let text = texts.get(f).cloned().flatten().unwrap_or_default();
        let unit = crate::repro::unit_config::parse_unit_file(&text);
        for p in ccci_host::EXEC_PROPERTIES {
            for line in unit
                .get("Service")
                .and_then(|s| s.get(*p))
                .cloned()
                .unwrap_or_default()
            {
                let argv = crate::repro::unit_config::split_command(&line);
                let c = Command {
                    place: format!("user unit {f}"),
                    argv,
                };
                if let Needs::File(s) = judge_argv(&c, &mut findings) {
                    // a user unit's script: read it in a second pass
                    to_read.entry(s).or_default().push(c.place.clone());
                }
            }
        }
    }
    // scripts named by user units that the first read did not cover
    let second: BTreeSet<String> = to_read
        .keys()
        .filter(|k| !texts.contains_key(*k))
        .cloned()
        .collect();
    let texts2 = read_scripts(ctx, t, &second).await?;
    for (f, places) in &to_read {
        if let Some(Some(text)) = texts.get(f).or_else(|| texts2.get(f)) {
            for finding in scan_text(f, text) {
                findings.push(format!("{} runs {finding}", places.join(", ")));
            }
        }
    }
    for f in &cron_files {
        if let Some(Some(text)) = texts.get(f) {
            findings.extend(scan_text(&format!("cron {f}"), text));
        }
    }
    let summary = format!(
        "{} system service(s) (exempt: {}), {} user unit file(s), {} cron source(s), {} container(s) with the Docker socket",
        services.len() - exempted.len(),
        if exempted.is_empty() { "none".to_string() } else { exempted.join(", ") },
        user_files.len(),
        cron_files.len(),
        commands.iter().filter(|c| c.place.starts_with("container ")).count()
    );
    t.push(Evidence::note("examined", summary.clone()));
    if findings.is_empty() {
        Ok(Outcome::pass(format!(
            "nothing else removes images or volumes: {summary}"
        )))
    } else {
        Ok(Outcome::fail(findings.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    #[test]
    fn what_removes_images_or_volumes() {
        for bad in [
            "docker system prune -af",
            "/usr/bin/docker image prune -f",
            "docker image prune --filter until=24h",
            "docker rmi redis:7-alpine",
            "docker image rm abc",
            "docker volume prune -f",
            "podman system prune",
            "docker compose down --rmi all",
            "curl --unix-socket /var/run/docker.sock -X POST http://x/images/prune",
            "containrrr/watchtower --cleanup",
            "/bin/sleep 600 WATCHTOWER_CLEANUP=true img /var/run/docker.sock",
        ] {
            assert!(removes(&w(bad)).is_some(), "{bad}");
        }
        for fine in [
            "docker container prune -f",
            "docker builder prune -f",
            "docker ps",
            "apt-get autoremove",
            "rm -rf /tmp/x",
            "/usr/local/bin/ci-docker-prune --threshold 80",
        ] {
            assert!(removes(&w(fine)).is_none(), "{fine}");
        }
    }

    #[test]
    fn cron_lines_and_comments() {
        let f = scan_text(
            "/etc/cron.d/x",
            "# docker system prune -af (a comment)\nSHELL=/bin/sh\n0 3 * * * root docker image prune -af >/dev/null\n",
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].starts_with("/etc/cron.d/x:3: removes images"), "{f:?}");
    }
}
