//! `repro.unit-config-git-eq-host`: the live units' effective settings (drop-ins included, as
//! systemd reports them) equal what git declares at REV for the host's flavour.
//!
//! Compared: the timer's `OnCalendar` (each, in systemd's normalised form), `Persistent`,
//! `RandomizedDelaySec` and the unit it triggers; every `Exec*` command of the service.
//!
//! What git declares:
//! - on NixOS, when the gate names the host's configuration (`[params.repro] system_attr`
//!   `nixosConfigurations.HOST.config.system.build.toplevel`, in the flake `system_flake`):
//!   what that configuration's `config.systemd.units."<unit>".text` holds at REV — the units
//!   as the host's own configuration renders them (its paths, threshold, schedule, a `mkForce`
//!   override) — with git at REV evaluated on the host as `repro.system-git-eq-host` evaluates
//!   it (a `git+file` flake at REV, `system::HostFlake`). Commands are compared
//!   exactly (the store paths are git's). NixOS's own variables (`PATH`, `LOCALE_ARCHIVE`,
//!   `TZDIR`) are left out on both sides;
//! - on NixOS otherwise (no `system_attr` of that form, or a configuration with no
//!   `systemd.units`, like the sandbox's stand-in system): the module file at REV evaluated with
//!   the module options the deploy uses (`[params.repro] module_settings`), by the stand-in
//!   module system at REV (`nix/eval/eval-module.nix` + `standin.nix`, read from git at REV, run
//!   with this machine's `nix-instantiate`); the evidence and the detail say that git's side is
//!   the module's defaults, and why. The package's store path is then the build's (and
//!   `repro.system-git-eq-host`'s) business: a command's program must be
//!   `/nix/store/…/bin/<the same name>`, its arguments equal;
//! - elsewhere: the portable unit files at REV (`[params.repro] portable_units`).

use super::blocking;
use crate::Ctx;
use ccci_core::{short, Decided, Evidence, Halt, Outcome, Trail};
use ccci_nix::GitRepo;
use std::collections::BTreeMap;

/// The settings compared, of one timer and one service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `OnCalendar` values, normalised (`daily` → `*-*-* 00:00:00`).
    pub on_calendar: Vec<String>,
    pub persistent: Option<bool>,
    /// `RandomizedDelaySec` in microseconds.
    pub randomized_delay_us: Option<u64>,
    /// The timer's monotonic triggers (`OnBootSec=`, `OnUnitActiveSec=`, …): the trigger's
    /// name without `Sec` (`OnBoot`) and its span in microseconds, sorted.
    pub monotonic: Vec<(String, u64)>,
    /// The unit the timer triggers.
    pub unit: Option<String>,
    /// `(property, argv)` of every command of the service, in order.
    pub exec: Vec<(String, Vec<String>)>,
    /// The service's `Environment=` assignments (`K=V`), sorted.
    pub environment: Vec<String>,
    /// The service's `EnvironmentFile=` paths (`-` prefixed when optional), in order.
    pub environment_files: Vec<String>,
    /// The `DOCKER_HOST` the service's commands get: the unit's environment (files included),
    /// else the manager's; unset means the default socket.
    pub docker_host: Option<String>,
}

/// Variables NixOS sets for every service itself (`PATH` from the unit's `path`,
/// `LOCALE_ARCHIVE`, `TZDIR` from `systemd.globalEnvironment`): the platform's, not git's
/// module, so they are not compared on NixOS.
pub const NIXOS_PLATFORM_VARS: &[&str] = &["PATH", "LOCALE_ARCHIVE", "TZDIR"];

/// Git's environment settings from `Environment=` values (each may hold several quoted
/// assignments) and `EnvironmentFile=` values.
fn env_settings(
    environment: &[String],
    files: &[String],
) -> (Vec<String>, Vec<String>, Option<String>) {
    let mut env: Vec<String> = environment
        .iter()
        .flat_map(|v| crate::unit_env::split_words(v))
        .collect();
    env.sort();
    let docker_host = env
        .iter()
        .filter_map(|a| a.strip_prefix("DOCKER_HOST="))
        .next_back()
        .map(String::from);
    (env, files.to_vec(), docker_host)
}

/// The monotonic trigger settings of a `[Timer]`, as git writes them (`systemctl show` calls
/// them `OnBootUSec` …).
pub const MONOTONIC_KEYS: &[&str] = &[
    "OnActiveSec",
    "OnBootSec",
    "OnStartupSec",
    "OnUnitActiveSec",
    "OnUnitInactiveSec",
];

/// `(key, values)` of git's monotonic triggers as a sorted list; a value that is not a time
/// span is an error (systemd would refuse it, so git does not declare what the test reads).
fn monotonic_from<'a>(
    pairs: impl IntoIterator<Item = (&'a str, Vec<String>)>,
) -> Result<Vec<(String, u64)>, String> {
    let mut out = Vec::new();
    for (k, values) in pairs {
        let name = k.strip_suffix("Sec").unwrap_or(k);
        for v in values {
            let us = timespan_us(&v)
                .ok_or_else(|| format!("git's {k}=`{v}` is not a time span systemd accepts"))?;
            out.push((name.to_string(), us));
        }
    }
    out.sort();
    Ok(out)
}

/// Split a systemd command line (`ExecStart=` value) into words: double and single quotes,
/// backslash escapes inside double quotes, `%%` → `%`, `$$` → `$`; a leading `-@:+!` prefix is
/// dropped (it changes how systemd runs the command, not what runs).
pub fn split_command(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                in_word = true;
                while let Some(d) = chars.next() {
                    if d == c {
                        break;
                    }
                    if d == '\\' && c == '"' {
                        if let Some(e) = chars.next() {
                            cur.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                        }
                    } else {
                        cur.push(d);
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(e) = chars.next() {
                    cur.push(e);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    for w in words.iter_mut() {
        *w = w.replace("%%", "%").replace("$$", "$");
    }
    if let Some(first) = words.first_mut() {
        let trimmed = first
            .trim_start_matches(['-', '@', ':', '+', '!'])
            .to_string();
        *first = trimmed;
    }
    words
}

/// A systemd time span (`1h`, `30min`, `1h 30min`, `90`, `2d`, `500ms`) in microseconds.
pub fn timespan_us(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s == "infinity" {
        return Some(u64::MAX);
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.trim_start().is_empty() {
        rest = rest.trim_start();
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = rest[num_end..].trim_start();
        let unit_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let mult: f64 = match unit {
            "" | "s" | "sec" | "second" | "seconds" => 1e6,
            "us" | "usec" | "µs" => 1.0,
            "ms" | "msec" => 1e3,
            "m" | "min" | "minute" | "minutes" => 60e6,
            "h" | "hr" | "hour" | "hours" => 3600e6,
            "d" | "day" | "days" => 86400e6,
            "w" | "week" | "weeks" => 604800e6,
            "M" | "month" | "months" => 2629800e6,
            "y" | "year" | "years" => 31557600e6,
            _ => return None,
        };
        total = total.saturating_add((n * mult) as u64);
    }
    Some(total)
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// `[Section]` → key → values (in order; an empty value resets the list, as systemd does).
pub fn parse_unit_file(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = if pending.is_empty() {
            raw.trim().to_string()
        } else {
            format!("{pending} {}", raw.trim())
        };
        if let Some(cont) = line.strip_suffix('\\') {
            pending = cont.trim_end().to_string();
            continue;
        }
        pending.clear();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            section = line[1..line.len() - 1].to_string();
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let values = out
                .entry(section.clone())
                .or_default()
                .entry(k.trim().to_string())
                .or_default();
            let v = v.trim();
            if v.is_empty() {
                values.clear();
            } else {
                values.push(v.to_string());
            }
        }
    }
    out
}

/// The settings git declares in portable unit files (`timer` and `service` texts).
pub fn from_unit_files(timer: &str, timer_name: &str, service: &str) -> Result<Settings, String> {
    let t = parse_unit_file(timer);
    let sv = parse_unit_file(service);
    let tk = |k: &str| -> Vec<String> {
        t.get("Timer")
            .and_then(|m| m.get(k))
            .cloned()
            .unwrap_or_default()
    };
    let default_unit = format!(
        "{}.service",
        timer_name.strip_suffix(".timer").unwrap_or(timer_name)
    );
    let mut exec = Vec::new();
    if let Some(s) = sv.get("Service") {
        for p in ccci_host::EXEC_PROPERTIES {
            for line in s.get(*p).cloned().unwrap_or_default() {
                exec.push((p.to_string(), split_command(&line)));
            }
        }
    }
    let sk = |k: &str| -> Vec<String> {
        sv.get("Service")
            .and_then(|m| m.get(k))
            .cloned()
            .unwrap_or_default()
    };
    let (environment, environment_files, docker_host) =
        env_settings(&sk("Environment"), &sk("EnvironmentFile"));
    Ok(Settings {
        environment,
        environment_files,
        docker_host,
        on_calendar: tk("OnCalendar"),
        persistent: tk("Persistent").last().and_then(|v| parse_bool(v)),
        randomized_delay_us: tk("RandomizedDelaySec").last().and_then(|v| timespan_us(v)),
        monotonic: monotonic_from(MONOTONIC_KEYS.iter().map(|k| (*k, tk(k))))?,
        unit: Some(tk("Unit").last().cloned().unwrap_or(default_unit)),
        exec,
    })
}

/// The settings git declares through the module, from `eval-module.nix`'s JSON (`services`,
/// `timers`).
pub fn from_module_eval(
    eval: &serde_json::Value,
    timer_name: &str,
    service_name: &str,
) -> Result<Settings, String> {
    let tstem = timer_name.strip_suffix(".timer").unwrap_or(timer_name);
    let sstem = service_name
        .strip_suffix(".service")
        .unwrap_or(service_name);
    let timer = eval
        .get("timers")
        .and_then(|t| t.get(tstem))
        .ok_or_else(|| format!("the module defines no systemd.timers.{tstem}"))?;
    let service = eval
        .get("services")
        .and_then(|s| s.get(sstem))
        .ok_or_else(|| format!("the module defines no systemd.services.{sstem}"))?;
    let tc = timer.get("timerConfig").cloned().unwrap_or_default();
    let list = |v: Option<&serde_json::Value>| -> Vec<String> {
        match v {
            Some(serde_json::Value::Array(a)) => a.iter().map(value_text).collect(),
            Some(serde_json::Value::Null) | None => vec![],
            Some(other) => vec![value_text(other)],
        }
    };
    let mut on_calendar = list(tc.get("OnCalendar"));
    // `startAt` on the service is NixOS's shorthand for OnCalendar
    if on_calendar.is_empty() {
        on_calendar = list(service.get("startAt"));
    }
    let sc = service.get("serviceConfig").cloned().unwrap_or_default();
    let mut exec = Vec::new();
    for p in ccci_host::EXEC_PROPERTIES {
        for line in list(sc.get(*p)) {
            exec.push((p.to_string(), split_command(&line)));
        }
    }
    if let Some(script) = service.get("script").and_then(|s| s.as_str()) {
        if !script.trim().is_empty() {
            return Err(
                "the service is defined by `script`: its command is a store path only a real NixOS evaluation gives"
                    .into(),
            );
        }
    }
    // `environment.K = V` renders `Environment="K=V"`; serviceConfig may add more
    let mut environment: Vec<String> = match service.get("environment") {
        Some(serde_json::Value::Object(m)) => m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("\"{k}={}\"", value_text(v).replace('"', "\\\"")))
            .collect(),
        _ => vec![],
    };
    environment.extend(list(sc.get("Environment")));
    let (environment, environment_files, docker_host) =
        env_settings(&environment, &list(sc.get("EnvironmentFile")));
    Ok(Settings {
        environment,
        environment_files,
        docker_host,
        on_calendar,
        persistent: list(tc.get("Persistent"))
            .last()
            .and_then(|v| parse_bool(v)),
        randomized_delay_us: list(tc.get("RandomizedDelaySec"))
            .last()
            .and_then(|v| timespan_us(v)),
        monotonic: monotonic_from(MONOTONIC_KEYS.iter().map(|k| (*k, list(tc.get(*k)))))?,
        unit: Some(
            list(tc.get("Unit"))
                .last()
                .cloned()
                .unwrap_or_else(|| format!("{tstem}.service")),
        ),
        exec,
    })
}

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// The live settings from `systemctl show` of the timer (every `TimersCalendar` and
/// `TimersMonotonic` line — systemd prints one line per trigger —, `Persistent`,
/// `RandomizedDelayUSec`, `Triggers`) and of the service (the `Exec*` properties). A
/// monotonic trigger whose span cannot be read is an error.
pub fn from_host(timer_show: &str, service_show: &str) -> Result<Settings, String> {
    let kv: BTreeMap<&str, &str> = timer_show
        .lines()
        .filter_map(|l| l.split_once('='))
        .collect();
    let mut on_calendar = Vec::new();
    let mut monotonic = Vec::new();
    for (k, v) in timer_show.lines().filter_map(|l| l.split_once('=')) {
        // `{ OnCalendar=*-*-* 00:00:00 ; next_elapse=… }`, `{ OnBootUSec=15min ; next_elapse=… }`
        let inner = v
            .trim()
            .trim_start_matches('{')
            .trim_end_matches('}')
            .trim();
        let first = inner.split(" ; ").next().unwrap_or("").trim();
        match k {
            "TimersCalendar" => {
                if let Some(c) = first.strip_prefix("OnCalendar=") {
                    on_calendar.push(c.trim().to_string());
                }
            }
            "TimersMonotonic" => {
                let Some((name, span)) = first.split_once('=') else {
                    return Err(format!("TimersMonotonic `{v}` has no trigger"));
                };
                let us = timespan_us(span)
                    .ok_or_else(|| format!("TimersMonotonic `{v}`: `{span}` is not a time span"))?;
                let name = name.strip_suffix("USec").unwrap_or(name);
                monotonic.push((name.to_string(), us));
            }
            _ => {}
        }
    }
    monotonic.sort();
    Ok(Settings {
        on_calendar,
        persistent: kv.get("Persistent").and_then(|v| parse_bool(v)),
        randomized_delay_us: kv.get("RandomizedDelayUSec").and_then(|v| timespan_us(v)),
        monotonic,
        unit: kv
            .get("Triggers")
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" ")),
        exec: ccci_host::parse_exec_lines(service_show)
            .into_iter()
            .map(|l| (l.property, l.argv))
            .collect(),
        ..Settings::default()
    })
}

/// The host's environment settings of the service: `env` as systemd shows and reads it, and
/// the manager's environment (`systemctl show-environment`) for a `DOCKER_HOST` the unit does
/// not set. On NixOS the platform's own variables are left out ([`NIXOS_PLATFORM_VARS`]).
pub fn host_env(
    env: &crate::unit_env::UnitEnv,
    manager_env: &str,
    nixos: bool,
) -> (Vec<String>, Vec<String>, Option<String>) {
    let mut environment: Vec<String> = env
        .environment
        .iter()
        .filter(|a| {
            let k = a.split('=').next().unwrap_or("");
            !(nixos && NIXOS_PLATFORM_VARS.contains(&k))
        })
        .cloned()
        .collect();
    environment.sort();
    let unset = |k: &str| env.unset.iter().any(|u| u == k);
    let docker_host = env.vars.get("DOCKER_HOST").cloned().or_else(|| {
        manager_env
            .lines()
            .filter_map(|l| l.strip_prefix("DOCKER_HOST="))
            .next_back()
            .filter(|_| !unset("DOCKER_HOST"))
            .map(String::from)
    });
    (environment, env.files.clone(), docker_host)
}

/// How a command's program is compared: exactly, or (NixOS) as any store path ending in the
/// same `/bin/<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    Exact,
    AnyStorePath,
}

fn same_program(git: &str, host: &str, how: Program) -> bool {
    match how {
        Program::Exact => git == host,
        Program::AnyStorePath => {
            let tail = |p: &str| p.rsplit_once("/bin/").map(|(_, n)| n.to_string());
            host.starts_with("/nix/store/") && tail(git).is_some() && tail(git) == tail(host)
        }
    }
}

/// systemd shows argv joined by spaces, unquoted: an argument with a space cannot be told
/// apart from two, so git's argv is compared as systemd shows it.
fn as_shown(argv: &[String]) -> Vec<String> {
    argv.join(" ")
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn cmd_text(argv: &[String]) -> String {
    argv.join(" ")
}

/// Decision: every setting of git's (`git`, calendars already normalised) against the host's,
/// one row each, side by side. Returns the outcome and the table.
pub fn decide(
    git: &Settings,
    host: &Settings,
    timer: &str,
    service: &str,
    how: Program,
) -> (Outcome, String) {
    let mut rows: Vec<(String, String, String, bool)> = Vec::new();
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "(unset)".into());
    // the schedule is a set: systemd lists the calendars newest first
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    rows.push((
        format!("{timer} OnCalendar"),
        sorted(&git.on_calendar).join(" | "),
        sorted(&host.on_calendar).join(" | "),
        sorted(&git.on_calendar) == sorted(&host.on_calendar),
    ));
    let mono = |v: &[(String, u64)]| {
        if v.is_empty() {
            "(none)".to_string()
        } else {
            v.iter()
                .map(|(k, us)| format!("{k}Sec={}s", *us as f64 / 1e6))
                .collect::<Vec<_>>()
                .join(" | ")
        }
    };
    rows.push((
        format!("{timer} monotonic triggers"),
        mono(&git.monotonic),
        mono(&host.monotonic),
        git.monotonic == host.monotonic,
    ));
    let b = |v: Option<bool>| v.map(|b| b.to_string()).unwrap_or_else(|| "(unset)".into());
    rows.push((
        format!("{timer} Persistent"),
        b(git.persistent),
        b(host.persistent),
        git.persistent.unwrap_or(false) == host.persistent.unwrap_or(false),
    ));
    let us = |v: Option<u64>| {
        v.map(|u| format!("{}s", u as f64 / 1e6))
            .unwrap_or_else(|| "(unset)".into())
    };
    rows.push((
        format!("{timer} RandomizedDelaySec"),
        us(git.randomized_delay_us),
        us(host.randomized_delay_us),
        git.randomized_delay_us.unwrap_or(0) == host.randomized_delay_us.unwrap_or(0),
    ));
    rows.push((
        format!("{timer} Unit (triggers)"),
        opt(&git.unit),
        opt(&host.unit),
        git.unit == host.unit,
    ));
    let n = git.exec.len().max(host.exec.len());
    for i in 0..n {
        let g = git.exec.get(i);
        let h = host.exec.get(i);
        let equal = match (g, h) {
            (Some((gp, ga)), Some((hp, ha))) => {
                let ga = as_shown(ga);
                gp == hp
                    && ga.len() == ha.len()
                    && !ga.is_empty()
                    && same_program(&ga[0], &ha[0], how)
                    && ga[1..] == ha[1..]
            }
            _ => false,
        };
        let label = g.or(h).map(|(p, _)| p.clone()).unwrap_or_default();
        rows.push((
            format!("{service} {label}"),
            g.map(|(p, a)| format!("{p}={}", cmd_text(a)))
                .unwrap_or_else(|| "(none)".into()),
            h.map(|(p, a)| format!("{p}={}", cmd_text(a)))
                .unwrap_or_else(|| "(none)".into()),
            equal,
        ));
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "(none)".to_string()
        } else {
            v.join(" | ")
        }
    };
    rows.push((
        format!("{service} Environment"),
        list(&git.environment),
        list(&host.environment),
        git.environment == host.environment,
    ));
    rows.push((
        format!("{service} EnvironmentFile"),
        list(&git.environment_files),
        list(&host.environment_files),
        git.environment_files == host.environment_files,
    ));
    let dh = |v: &Option<String>| {
        v.clone()
            .unwrap_or_else(|| "(unset: the default socket)".into())
    };
    rows.push((
        format!("{service} DOCKER_HOST (effective)"),
        dh(&git.docker_host),
        dh(&host.docker_host),
        git.docker_host == host.docker_host,
    ));
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(8);
    let mut table = format!("{:<w$}  {}\n", "setting", "git | host");
    for (name, g, h, eq) in &rows {
        table.push_str(&format!(
            "{} {name:<w$}  git:  {g}\n{}{:<w$}  host: {h}\n",
            if *eq { " " } else { "≠" },
            " ",
            ""
        ));
    }
    let bad: Vec<String> = rows
        .iter()
        .filter(|r| !r.3)
        .map(|(name, g, h, _)| format!("{name}: git `{g}`, host `{h}`"))
        .collect();
    let o = if bad.is_empty() {
        Outcome::pass(format!(
            "{timer} and {service} run with the settings git declares ({} command(s), schedule {})",
            git.exec.len(),
            git.on_calendar.join(" | ")
        ))
    } else {
        Outcome::fail(bad.join("; "))
    };
    (o, table)
}

/// Normalise calendar expressions with the target's own `systemd-analyze calendar` (its
/// "Normalized form"), recorded.
async fn normalise_calendars(
    ctx: &Ctx,
    t: &mut Trail,
    specs: &[String],
) -> Result<Vec<String>, Halt> {
    let mut out = Vec::new();
    for s in specs {
        let o = ctx
            .cmd(t, &["systemd-analyze", "calendar", "--", s])
            .await?;
        let text = o.stdout_str();
        let norm = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Normalized form:"))
            .map(|v| v.trim().to_string());
        match norm {
            Some(n) if o.ok() => out.push(n),
            _ => {
                return Err(Halt::fail(format!(
                    "git's OnCalendar `{s}` is not a calendar expression systemd accepts: {}",
                    o.combined().trim()
                )))
            }
        }
    }
    Ok(out)
}

/// Git's settings at REV for a NixOS host: the module evaluated by the stand-in at REV.
fn module_settings_at(
    repo: &std::path::Path,
    rev: &str,
    module_file: &str,
    settings: &str,
) -> Result<(serde_json::Value, String), String> {
    let g = GitRepo::open(repo).map_err(|e| e.to_string())?;
    let sha = g.resolve(rev).map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    for (rel, dest) in [
        ("nix/eval/standin.nix", "eval/standin.nix"),
        ("nix/eval/eval-module.nix", "eval/eval-module.nix"),
        (module_file, "module.nix"),
    ] {
        let bytes = g
            .read_file_at_commit(&sha, rel)
            .map_err(|e| format!("{rel} at {}: {e}", short(&sha)))?;
        let p = dir.path().join(dest);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(&p, bytes).map_err(|e| e.to_string())?;
    }
    let module = dir.path().join("module.nix");
    let argv = [
        "nix-instantiate".to_string(),
        "--eval".into(),
        "--strict".into(),
        "--json".into(),
        dir.path()
            .join("eval/eval-module.nix")
            .display()
            .to_string(),
        "--arg".into(),
        "module".into(),
        module.display().to_string(),
        "--argstr".into(),
        "settings".into(),
        settings.to_string(),
    ];
    let shown = format!(
        "git show {}:{module_file} > module.nix; nix-instantiate --eval --strict --json nix/eval/eval-module.nix (at REV) --arg module ./module.nix --argstr settings '{settings}'",
        short(&sha)
    );
    let out = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|e| {
            format!("cannot run nix-instantiate on the verifier (Debian: nix-bin): {e}")
        })?;
    if !out.status.success() {
        return Err(format!(
            "{shown}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{shown}: not JSON: {e}"))?;
    Ok((v, shown))
}

/// Where a deployment puts the family's unit files.
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// NixOS's link farm the system's units are reached through.
pub const NIXOS_STATIC_UNIT_DIR: &str = "/etc/static/systemd/system";

/// `FragmentPath` and every `DropInPaths` entry of a `systemctl show` block.
pub fn unit_sources(show: &str) -> (String, Vec<String>) {
    let mut fragment = String::new();
    let mut dropins = Vec::new();
    for line in show.lines() {
        if let Some(v) = line.strip_prefix("FragmentPath=") {
            fragment = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("DropInPaths=") {
            dropins.extend(v.split_whitespace().map(String::from));
        }
    }
    (fragment, dropins)
}

/// Where each file of `unit` (its fragment and drop-ins) comes from, against where the
/// deployment puts them: on Debian the fragment is the installed file
/// `/etc/systemd/system/<unit>` (not a link) and git deploys no drop-in; on NixOS every file is
/// a `/etc/systemd/system/…` path that resolves to the same store file as
/// `/etc/static/systemd/system/…` (the system's unit tree), and `/etc/static` is the current
/// system's `etc` where the host has one. Anything else (`/run/systemd/system`,
/// `/run/systemd/transient`, `system.control`, generator output, a hand-made file) is named.
async fn foreign_unit_files(
    ctx: &Ctx,
    t: &mut Trail,
    unit: &str,
    show: &str,
    nixos: bool,
) -> Result<Vec<String>, Halt> {
    let (fragment, dropins) = unit_sources(show);
    let mut bad = Vec::new();
    let expected = format!("{UNIT_DIR}/{unit}");
    if fragment.is_empty() {
        bad.push(format!("{unit} has no unit file (FragmentPath is empty)"));
    }
    let realpath = |out: ccci_host::CmdOutput| {
        out.ok()
            .then(|| out.stdout_str().trim().to_string())
            .filter(|s| !s.is_empty())
    };
    if !nixos {
        if !fragment.is_empty() && fragment != expected {
            bad.push(format!(
                "{unit} is loaded from {fragment}, not {expected} where the deployment installs it"
            ));
        } else if !fragment.is_empty() {
            let link = ctx.cmd(t, &["readlink", "--", &fragment]).await?;
            if link.ok() {
                bad.push(format!(
                    "{fragment} is a link to {}, not the file the deployment installs",
                    link.stdout_str().trim()
                ));
            }
        }
        for d in &dropins {
            bad.push(format!(
                "{unit} has the drop-in {d}, which git does not deploy"
            ));
        }
        return Ok(bad);
    }
    for f in std::iter::once(&fragment)
        .filter(|f| !f.is_empty())
        .chain(&dropins)
    {
        let what = if *f == fragment {
            "unit file"
        } else {
            "drop-in"
        };
        let Some(rel) = f.strip_prefix(&format!("{UNIT_DIR}/")) else {
            bad.push(format!(
                "{unit}'s {what} {f} is outside {UNIT_DIR}, not in the system's unit tree"
            ));
            continue;
        };
        let real = realpath(ctx.cmd(t, &["readlink", "-e", "--", f]).await?);
        let want = realpath(
            ctx.cmd(
                t,
                &[
                    "readlink",
                    "-e",
                    "--",
                    &format!("{NIXOS_STATIC_UNIT_DIR}/{rel}"),
                ],
            )
            .await?,
        );
        match (real, want) {
            (Some(r), Some(w)) if r == w && r.starts_with("/nix/store/") => {}
            (r, w) => bad.push(format!(
                "{unit}'s {what} {f} is not the system's: it resolves to {}, the system's unit tree has {}",
                r.unwrap_or_else(|| "(nothing)".into()),
                w.map(|w| format!("{w} at {NIXOS_STATIC_UNIT_DIR}/{rel}"))
                    .unwrap_or_else(|| format!("nothing at {NIXOS_STATIC_UNIT_DIR}/{rel}"))
            )),
        }
    }
    Ok(bad)
}

/// On NixOS, `/etc/static` must be the current system's `etc` when the system has one (a
/// real NixOS does; the sandbox's stand-in system does not, and the evidence says so).
async fn static_is_current_system(ctx: &Ctx, t: &mut Trail) -> Result<Option<String>, Halt> {
    let cur = ctx
        .cmd(t, &["readlink", "-e", "--", "/run/current-system/etc"])
        .await?;
    if !cur.ok() {
        t.note(
            "/etc/static and the current system",
            "/run/current-system has no etc: which system /etc/static belongs to is left to repro.system-git-eq-host",
        );
        return Ok(None);
    }
    let st = ctx.cmd(t, &["readlink", "-e", "--", "/etc/static"]).await?;
    let (c, s) = (
        cur.stdout_str().trim().to_string(),
        st.stdout_str().trim().to_string(),
    );
    Ok((c != s).then(|| {
        format!("/etc/static resolves to {s}, not the current system's etc {c}: the units are not the running system's")
    }))
}

/// The host's configuration in the flake, from the system toplevel's attribute:
/// `nixosConfigurations.HOST.config.system.build.toplevel` → `nixosConfigurations.HOST.config`.
pub fn configuration_of(system_attr: &str) -> Option<String> {
    system_attr
        .strip_suffix(".system.build.toplevel")
        .filter(|c| c.ends_with(".config"))
        .map(String::from)
}

/// A Nix string literal of `s` (`"`, `\\` and `${` escaped).
fn nix_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The function `nix eval --apply` gives the host's configuration: the `text` of each unit in
/// `names` as `config.systemd.units` renders it (null when the configuration does not declare
/// it, or declares it disabled), or null when the configuration has no `systemd.units` (not a
/// NixOS configuration).
pub fn units_apply(names: &[&str]) -> String {
    let list = names
        .iter()
        .map(|n| nix_string(n))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "c: if (c ? systemd) && (c.systemd ? units) then builtins.listToAttrs (map (n: {{ name = n; value = let u = c.systemd.units.${{n}} or null; in if u == null || !(u.enable or true) then null else u.text or null; }}) [ {list} ]) else null"
    )
}

/// Git's side on NixOS when the gate knows the host's configuration: what
/// `config.systemd.units` of `config_attr` holds at REV for the timer and the service, git at
/// REV evaluated on the host as the system check evaluates it (a `git+file` flake). `None`
/// when the configuration has no `systemd.units` (a stand-in, not a NixOS configuration).
async fn rendered_units_at_rev(
    ctx: &Ctx,
    t: &mut Trail,
    config_attr: &str,
    timer: &str,
    service: &str,
) -> Result<Option<(String, String)>, Halt> {
    let hf = super::system::HostFlake::upload(ctx, t).await?;
    let argv = super::system::nix_eval(&[
        "--json".into(),
        format!("{}#{config_attr}", hf.flake),
        "--apply".into(),
        units_apply(&[timer, service]),
    ]);
    let ev = ctx.cmd_owned(t, &argv).await;
    hf.remove(ctx).await;
    let ev = ev?;
    if !ev.ok() {
        return Err(Halt::error(format!(
            "git at {} does not evaluate {config_attr}.systemd.units on the host: {}",
            short(&ctx.rev),
            super::system::nix_error(&ev.stderr_str())
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&ev.stdout).map_err(|e| {
        Halt::error(format!(
            "{config_attr}.systemd.units at {}: not JSON: {e}",
            short(&ctx.rev)
        ))
    })?;
    if v.is_null() {
        return Ok(None);
    }
    let text = |name: &str| -> Result<String, Halt> {
        v.get(name)
            .and_then(|x| x.as_str())
            .map(String::from)
            .ok_or_else(|| {
                Halt::fail(format!(
                    "git's configuration {config_attr} at {} declares no enabled systemd.units.\"{name}\"",
                    short(&ctx.rev)
                ))
            })
    };
    Ok(Some((text(timer)?, text(service)?)))
}

/// Git's settings from units as NixOS renders them: the unit files' settings, without the
/// variables NixOS sets for every service ([`NIXOS_PLATFORM_VARS`], not compared on NixOS).
pub fn from_rendered_units(
    timer: &str,
    timer_name: &str,
    service: &str,
) -> Result<Settings, String> {
    let mut s = from_unit_files(timer, timer_name, service)?;
    s.environment.retain(|a| {
        let k = a.split('=').next().unwrap_or("");
        !NIXOS_PLATFORM_VARS.contains(&k)
    });
    Ok(s)
}

/// Git's settings on NixOS from the module's defaults: the module file at REV evaluated with
/// `[params.repro] module_settings` (the stand-in module system at REV); `why` says why the
/// host's own configuration is not git's side, in the evidence.
async fn module_defaults(
    ctx: &Ctx,
    t: &mut Trail,
    timer: &str,
    service: &str,
    why: String,
) -> Result<Settings, Halt> {
    let repro = ctx.params.repro.clone();
    let Some(module_file) = repro.module_files.first().cloned() else {
        return Err(Halt::error("[params.repro] module_files is empty"));
    };
    let (repo, rev, settings) = (ctx.repo.clone(), ctx.rev.clone(), repro.module_settings);
    t.note(
        "git's side: the module's defaults",
        format!("{why}: git's side is {module_file} at {} evaluated with module_settings (the module's options as the deploy gives them), not the host's own configuration", short(&ctx.rev)),
    );
    let (eval, shown) = blocking(move || module_settings_at(&repo, &rev, &module_file, &settings))
        .await?
        .map_err(|e| Halt::error(format!("cannot evaluate the module at REV: {e}")))?;
    let s = from_module_eval(&eval, timer, service).map_err(Halt::fail)?;
    t.note(
        shown,
        serde_json::to_string_pretty(&serde_json::json!({
            "timers": eval.get("timers"),
            "services": eval.get("services").map(|s| s.get(service.trim_end_matches(".service")))
        }))
        .unwrap_or_default(),
    );
    Ok(s)
}

pub(super) async fn unit_config_git_eq_host(ctx: &Ctx, t: &mut Trail) -> Decided {
    let timer = ctx.params.prune_timer.clone();
    let service = ctx.params.prune_service.clone();
    let nixos = super::host_is_nixos(ctx, t).await?;
    let repro = ctx.params.repro.clone();
    // where git's side comes from, for the detail
    let mut source = String::new();
    let (git, how) = if nixos {
        let config = repro.system_attr.as_deref().and_then(configuration_of);
        let rendered = match &config {
            Some(c) => rendered_units_at_rev(ctx, t, c, &timer, &service).await?,
            None => None,
        };
        match (config, rendered) {
            (Some(c), Some((ttext, stext))) => {
                source = format!(
                    "git's side: {c}.systemd.units at {} (the host's configuration in {})",
                    short(&ctx.rev),
                    repro.system_flake
                );
                t.note(
                    format!("{c}.systemd.units.\"{timer}\".text at {}", short(&ctx.rev)),
                    ttext.clone(),
                );
                t.note(
                    format!(
                        "{c}.systemd.units.\"{service}\".text at {}",
                        short(&ctx.rev)
                    ),
                    stext.clone(),
                );
                (
                    from_rendered_units(&ttext, &timer, &stext).map_err(Halt::fail)?,
                    Program::Exact,
                )
            }
            (config, _) => {
                let why = match config {
                    Some(c) => format!(
                        "git's {c} at {} has no systemd.units: not a NixOS configuration",
                        short(&ctx.rev)
                    ),
                    None => format!(
                        "the gate names no host configuration ([params.repro] system_attr {})",
                        repro
                            .system_attr
                            .as_deref()
                            .map(|a| format!("`{a}` is not nixosConfigurations.HOST.config.system.build.toplevel"))
                            .unwrap_or_else(|| "is not set".into())
                    ),
                };
                source = format!("git's side: the module's defaults with module_settings ({why})");
                (
                    module_defaults(ctx, t, &timer, &service, why).await?,
                    Program::AnyStorePath,
                )
            }
        }
    } else {
        let files = repro.portable_units.clone();
        let find = |suffix: &str| files.iter().find(|f| f.ends_with(suffix)).cloned();
        let (Some(tf), Some(sf)) = (find(&timer), find(&service)) else {
            return Err(Halt::error(format!(
                "[params.repro] portable_units names no {timer} and {service}"
            )));
        };
        let (repo, rev) = (ctx.repo.clone(), ctx.rev.clone());
        let (tf2, sf2) = (tf.clone(), sf.clone());
        let texts = blocking(move || -> Result<(String, String), String> {
            let g = GitRepo::open(&repo).map_err(|e| e.to_string())?;
            let sha = g.resolve(&rev).map_err(|e| e.to_string())?;
            let read = |f: &str| {
                g.read_file_at_commit(&sha, f)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .map_err(|e| e.to_string())
            };
            Ok((read(&tf2)?, read(&sf2)?))
        })
        .await?
        .map_err(|e| Halt::fail(format!("the portable units at {}: {e}", short(&ctx.rev))))?;
        t.note(
            format!("git show {}:{tf}", short(&ctx.rev)),
            texts.0.clone(),
        );
        t.note(
            format!("git show {}:{sf}", short(&ctx.rev)),
            texts.1.clone(),
        );
        (
            from_unit_files(&texts.0, &timer, &texts.1).map_err(Halt::fail)?,
            Program::Exact,
        )
    };
    let mut git = git;
    git.on_calendar = normalise_calendars(ctx, t, &git.on_calendar).await?;
    let tshow = ctx
        .cmd(
            t,
            &[
                "systemctl",
                "show",
                "-p",
                "TimersCalendar,TimersMonotonic,Persistent,RandomizedDelayUSec,Triggers,DropInPaths,FragmentPath",
                "--",
                &timer,
            ],
        )
        .await?;
    let mut props = vec!["DropInPaths".to_string(), "FragmentPath".into()];
    props.extend(ccci_host::EXEC_PROPERTIES.iter().map(|s| s.to_string()));
    let sshow = ctx
        .cmd(
            t,
            &["systemctl", "show", "-p", &props.join(","), "--", &service],
        )
        .await?;
    if !tshow.ok() || !sshow.ok() {
        return Err(Halt::error("systemctl show of the prune units failed"));
    }
    let host = from_host(&tshow.stdout_str(), &sshow.stdout_str()).map_err(|e| {
        Halt::error(format!(
            "cannot read the timer's triggers from systemctl show: {e}"
        ))
    })?;
    let mut host = host;
    let env = crate::unit_env::read(ctx, t, &service).await?;
    // the manager's environment may hold anything: only its DOCKER_HOST is evidence
    let menv = ctx
        .cmd(&mut Trail::new(), &["systemctl", "show-environment"])
        .await?;
    if !menv.ok() {
        return Err(Halt::error("systemctl show-environment failed"));
    }
    t.push(Evidence::new(
        "systemctl show-environment | grep ^DOCKER_HOST=",
        Some(0),
        menv.stdout_str()
            .lines()
            .filter(|l| l.starts_with("DOCKER_HOST="))
            .collect::<Vec<_>>()
            .join("\n"),
    ));
    (host.environment, host.environment_files, host.docker_host) =
        host_env(&env, &menv.stdout_str(), nixos);
    // values of secret-looking names are compared, never shown
    let hide = |v: &mut Vec<String>| {
        for a in v.iter_mut() {
            if let Some((k, val)) = a.split_once('=') {
                *a = crate::unit_env::shown(ctx, k, val);
            }
        }
    };
    let (git_env, host_env_shown) = (git.environment.clone(), host.environment.clone());
    let same_env = git_env == host_env_shown;
    hide(&mut git.environment);
    hide(&mut host.environment);
    if !same_env && git.environment == host.environment {
        // equal once hidden: say so without the values
        host.environment.push("(a hidden value differs)".into());
    }
    let (mut o, table) = decide(&git, &host, &timer, &service, how);
    if !source.is_empty() {
        o.detail = format!("{} ({source})", o.detail);
    }
    t.push(Evidence::note("git ⟷ host, setting by setting", table));
    // where the settings come from: only the files the deployment puts there
    let mut foreign = foreign_unit_files(ctx, t, &timer, &tshow.stdout_str(), nixos).await?;
    foreign.extend(foreign_unit_files(ctx, t, &service, &sshow.stdout_str(), nixos).await?);
    if nixos {
        foreign.extend(static_is_current_system(ctx, t).await?);
    }
    if foreign.is_empty() {
        return Ok(o);
    }
    let o = match o.verdict {
        ccci_core::Verdict::Pass => Outcome::fail(foreign.join("; ")),
        _ => {
            let mut o = o;
            o.detail = format!("{}; {}", o.detail, foreign.join("; "));
            o
        }
    };
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccci_core::Verdict;

    const TIMER: &str = "[Unit]\nDescription=x\n[Timer]\nOnCalendar=daily\nPersistent=true\nRandomizedDelaySec=1h\nAccuracySec=1min\n[Install]\nWantedBy=timers.target\n";
    const SERVICE: &str = "[Service]\nType=oneshot\nExecStart=/usr/local/bin/ci-docker-prune --threshold 80 --path / --until 24h\n";

    fn host_timer(cal: &str, delay: &str) -> String {
        format!("TimersCalendar={{ OnCalendar={cal} ; next_elapse=Tue 2026-12-01 00:00:00 UTC }}\nPersistent=yes\nRandomizedDelayUSec={delay}\nTriggers=ci-docker-prune.service\n")
    }
    fn host_service(cmd: &str) -> String {
        format!("ExecStart={{ path={} ; argv[]={cmd} ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }}\n", cmd.split(' ').next().unwrap_or(""))
    }
    fn git() -> Settings {
        let mut g = from_unit_files(TIMER, "ci-docker-prune.timer", SERVICE).unwrap();
        g.on_calendar = vec!["*-*-* 00:00:00".into()];
        g
    }

    #[test]
    fn debian_units_equal_pass() {
        let host = from_host(
            &host_timer("*-*-* 00:00:00", "1h"),
            &host_service("/usr/local/bin/ci-docker-prune --threshold 80 --path / --until 24h"),
        )
        .unwrap();
        let (o, table) = decide(
            &git(),
            &host,
            "ci-docker-prune.timer",
            "ci-docker-prune.service",
            Program::Exact,
        );
        assert_eq!(o.verdict, Verdict::Pass, "{}\n{table}", o.detail);
    }

    #[test]
    fn a_schedule_drop_in_and_an_added_flag_fail_by_name_with_both_values() {
        let host = from_host(
            &host_timer("*-*-* 06:00:00", "1h"),
            &host_service(
                "/usr/local/bin/ci-docker-prune --threshold 80 --path / --until 24h --all",
            ),
        )
        .unwrap();
        let (o, table) = decide(
            &git(),
            &host,
            "ci-docker-prune.timer",
            "ci-docker-prune.service",
            Program::Exact,
        );
        assert_eq!(o.verdict, Verdict::Fail);
        assert!(
            o.detail.contains(
                "ci-docker-prune.timer OnCalendar: git `*-*-* 00:00:00`, host `*-*-* 06:00:00`"
            ),
            "{}",
            o.detail
        );
        assert!(
            o.detail.contains("ci-docker-prune.service ExecStart")
                && o.detail.contains("--until 24h --all`"),
            "{}",
            o.detail
        );
        assert!(table.contains('≠'), "{table}");
        // a delay changed, another unit triggered
        let mut h = from_host(
            &host_timer("*-*-* 00:00:00", "30min"),
            &host_service("/usr/local/bin/ci-docker-prune --threshold 80 --path / --until 24h"),
        )
        .unwrap();
        h.unit = Some("other.service".into());
        let (o, _) = decide(
            &git(),
            &h,
            "ci-docker-prune.timer",
            "ci-docker-prune.service",
            Program::Exact,
        );
        assert!(
            o.detail
                .contains("RandomizedDelaySec: git `3600s`, host `1800s`"),
            "{}",
            o.detail
        );
        assert!(
            o.detail
                .contains("Unit (triggers): git `ci-docker-prune.service`, host `other.service`"),
            "{}",
            o.detail
        );
        // an extra ExecStartPost line
        let mut svc =
            host_service("/usr/local/bin/ci-docker-prune --threshold 80 --path / --until 24h");
        svc.push_str("ExecStartPost={ path=/bin/sh ; argv[]=/bin/sh -c docker system prune -af ; ignore_errors=no }\n");
        let h = from_host(&host_timer("*-*-* 00:00:00", "1h"), &svc).unwrap();
        let (o, _) = decide(
            &git(),
            &h,
            "ci-docker-prune.timer",
            "ci-docker-prune.service",
            Program::Exact,
        );
        assert!(o.detail.contains("ExecStartPost: git `(none)`, host `ExecStartPost=/bin/sh -c docker system prune -af`"), "{}", o.detail);
    }

    #[test]
    fn nixos_program_is_any_store_path_with_the_same_name() {
        let eval = serde_json::json!({
            "timers": {"ci-docker-prune": {"timerConfig": {"OnCalendar": "daily", "Persistent": true, "RandomizedDelaySec": "1h", "Unit": "ci-docker-prune.service"}}},
            "services": {"ci-docker-prune": {"serviceConfig": {"ExecStart": "\"/nix/store/0000-ci-docker-prune-0.1.0/bin/ci-docker-prune\" \"--threshold\" \"80\" \"--run-stack-pattern\" \"^x$$\""}}}
        });
        let mut g =
            from_module_eval(&eval, "ci-docker-prune.timer", "ci-docker-prune.service").unwrap();
        g.on_calendar = vec!["*-*-* 00:00:00".into()];
        assert_eq!(
            g.exec[0].1,
            vec![
                "/nix/store/0000-ci-docker-prune-0.1.0/bin/ci-docker-prune",
                "--threshold",
                "80",
                "--run-stack-pattern",
                "^x$"
            ]
        );
        let host = from_host(
            &host_timer("*-*-* 00:00:00", "1h"),
            &host_service("/nix/store/abcd-ci-docker-prune-0.1.0/bin/ci-docker-prune --threshold 80 --run-stack-pattern ^x$"),
        ).unwrap();
        let (o, _) = decide(
            &g,
            &host,
            "ci-docker-prune.timer",
            "ci-docker-prune.service",
            Program::AnyStorePath,
        );
        assert_eq!(o.verdict, Verdict::Pass, "{}", o.detail);
        let host = from_host(
            &host_timer("*-*-* 00:00:00", "1h"),
            &host_service("/usr/local/bin/ci-docker-prune --threshold 80 --run-stack-pattern ^x$"),
        )
        .unwrap();
        let (o, _) = decide(
            &g,
            &host,
            "ci-docker-prune.timer",
            "ci-docker-prune.service",
            Program::AnyStorePath,
        );
        assert_eq!(
            o.verdict,
            Verdict::Fail,
            "a program outside the store is not the package"
        );
    }

    /// `systemctl show` prints one `TimersCalendar=` line per calendar and one
    /// `TimersMonotonic=` line per monotonic trigger (seen on the sandbox's systemd 252 with a
    /// drop-in adding `OnCalendar=*:0/15`, `OnBootSec=15min`, `OnUnitActiveSec=1d`).
    #[test]
    fn every_trigger_line_is_read_and_an_added_one_fails() {
        let shown = "TimersMonotonic={ OnUnitActiveUSec=1d ; next_elapse=1d 3h 8min 26.609666s }\n\
TimersMonotonic={ OnBootUSec=15min ; next_elapse=2h 48min 52.335748s }\n\
TimersCalendar={ OnCalendar=*-*-* *:00/15:00 ; next_elapse=Thu 2026-12-03 12:30:00 UTC }\n\
TimersCalendar={ OnCalendar=*-*-* 00:00:00 ; next_elapse=Fri 2026-12-04 00:00:00 UTC }\n\
Persistent=yes\nRandomizedDelayUSec=1h\nTriggers=ci-docker-prune.service\n";
        let svc =
            host_service("/usr/local/bin/ci-docker-prune --threshold 80 --path / --until 24h");
        let h = from_host(shown, &svc).unwrap();
        assert_eq!(h.on_calendar, vec!["*-*-* *:00/15:00", "*-*-* 00:00:00"]);
        assert_eq!(
            h.monotonic,
            vec![
                ("OnBoot".to_string(), 900_000_000),
                ("OnUnitActive".to_string(), 86_400_000_000)
            ]
        );
        let (o, _) = decide(
            &git(),
            &h,
            "ci-docker-prune.timer",
            "ci-docker-prune.service",
            Program::Exact,
        );
        assert_eq!(o.verdict, Verdict::Fail);
        assert!(
            o.detail.contains(
                "OnCalendar: git `*-*-* 00:00:00`, host `*-*-* *:00/15:00 | *-*-* 00:00:00`"
            ),
            "{}",
            o.detail
        );
        assert!(
            o.detail.contains(
                "monotonic triggers: git `(none)`, host `OnBootSec=900s | OnUnitActiveSec=86400s`"
            ),
            "{}",
            o.detail
        );
        // git declaring the same triggers, in another order, passes
        let timer = TIMER.replace(
            "OnCalendar=daily",
            "OnCalendar=daily\nOnCalendar=*:0/15\nOnUnitActiveSec=1d\nOnBootSec=15min",
        );
        let mut g = from_unit_files(&timer, "ci-docker-prune.timer", SERVICE).unwrap();
        g.on_calendar = vec!["*-*-* 00:00:00".into(), "*-*-* *:00/15:00".into()];
        let (o, _) = decide(
            &g,
            &h,
            "ci-docker-prune.timer",
            "ci-docker-prune.service",
            Program::Exact,
        );
        assert_eq!(o.verdict, Verdict::Pass, "{}", o.detail);
        // a span systemd would not accept is no schedule git declares
        assert!(from_unit_files("[Timer]\nOnBootSec=soon\n", "t.timer", SERVICE).is_err());
    }

    #[test]
    fn the_environment_and_the_docker_host_are_compared() {
        let env = crate::unit_env::UnitEnv {
            environment: vec![
                "DOCKER_HOST=unix:///run/other.sock".into(),
                "PATH=/nix/store/x/bin".into(),
            ],
            vars: [(
                "DOCKER_HOST".to_string(),
                "unix:///run/other.sock".to_string(),
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let (e, f, dh) = host_env(&env, "LANG=C\n", true);
        // NixOS's own PATH is the platform's, not compared
        assert_eq!(e, vec!["DOCKER_HOST=unix:///run/other.sock".to_string()]);
        assert!(f.is_empty());
        assert_eq!(dh.as_deref(), Some("unix:///run/other.sock"));
        let mut h = git();
        (h.environment, h.environment_files, h.docker_host) = (e, f, dh);
        let (o, _) = decide(
            &git(),
            &h,
            "ci-docker-prune.timer",
            "ci-docker-prune.service",
            Program::Exact,
        );
        assert!(
            o.detail.contains("DOCKER_HOST (effective): git `(unset: the default socket)`, host `unix:///run/other.sock`"),
            "{}",
            o.detail
        );
        // the manager's DOCKER_HOST counts when the unit sets none, unless the unit unsets it
        let none = crate::unit_env::UnitEnv::default();
        assert_eq!(
            host_env(&none, "DOCKER_HOST=tcp://x:2375\n", false)
                .2
                .as_deref(),
            Some("tcp://x:2375")
        );
        let unset = crate::unit_env::UnitEnv {
            unset: vec!["DOCKER_HOST".into()],
            ..Default::default()
        };
        assert_eq!(
            host_env(&unset, "DOCKER_HOST=tcp://x:2375\n", false).2,
            None
        );
        // git's Environment= values, several assignments in one, quoted
        let svc = format!("{SERVICE}Environment=\"DOCKER_HOST=unix:///a.sock\" B=1\n");
        let g = from_unit_files(TIMER, "ci-docker-prune.timer", &svc).unwrap();
        assert_eq!(
            g.environment,
            vec!["B=1".to_string(), "DOCKER_HOST=unix:///a.sock".into()]
        );
        assert_eq!(g.docker_host.as_deref(), Some("unix:///a.sock"));
    }

    #[test]
    fn the_host_configuration_is_the_toplevel_attribute_s_config() {
        assert_eq!(
            configuration_of("nixosConfigurations.cc-ci.config.system.build.toplevel").as_deref(),
            Some("nixosConfigurations.cc-ci.config")
        );
        assert_eq!(configuration_of("packages.x86_64-linux.default"), None);
        assert_eq!(configuration_of("system.build.toplevel"), None);
    }

    /// The `--apply` function, run by this machine's Nix on hand-written configurations: the
    /// units' text, null for a unit declared disabled or not at all, null for a configuration
    /// without `systemd.units`; names with `"` and `${` stay literal.
    #[test]
    fn the_apply_function_reads_the_units_text() {
        let names = ["a.timer", "b.service", "c.service", "d\"${x}.service"];
        let eval = |config: &str| -> serde_json::Value {
            let expr = format!("({}) ({config})", units_apply(&names));
            let out = std::process::Command::new("nix-instantiate")
                .args(["--eval", "--strict", "--json", "-E", &expr])
                .output()
                .expect("nix-instantiate (Debian: nix-bin)");
            assert!(
                out.status.success(),
                "{expr}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        };
        let v = eval(
            r#"{ systemd.units = { "a.timer".text = "[Timer]\nOnCalendar=hourly\n"; "b.service" = { text = "S"; enable = false; }; "d\"\${x}.service".text = "D"; }; }"#,
        );
        assert_eq!(
            v,
            serde_json::json!({
                "a.timer": "[Timer]\nOnCalendar=hourly\n",
                "b.service": null,
                "c.service": null,
                "d\"${x}.service": "D"
            })
        );
        assert_eq!(
            eval("{ system.build.toplevel = 1; }"),
            serde_json::Value::Null
        );
    }

    /// Units as NixOS renders them: the platform's variables are not git's module's.
    #[test]
    fn rendered_units_leave_out_the_platform_variables() {
        let service = "[Service]\nEnvironment=\"LOCALE_ARCHIVE=/nix/store/l/locale-archive\"\nEnvironment=\"PATH=/nix/store/c/bin\"\nEnvironment=\"DOCKER_HOST=unix:///run/d.sock\"\nExecStart=\"/nix/store/p-ci-docker-prune/bin/ci-docker-prune\" \"--threshold\" \"75\"\n";
        let timer = "[Timer]\nOnCalendar=hourly\nUnit=ci-docker-prune.service\n";
        let s = from_rendered_units(timer, "ci-docker-prune.timer", service).unwrap();
        assert_eq!(
            s.environment,
            vec!["DOCKER_HOST=unix:///run/d.sock".to_string()]
        );
        assert_eq!(s.docker_host.as_deref(), Some("unix:///run/d.sock"));
        assert_eq!(
            s.exec,
            vec![(
                "ExecStart".to_string(),
                vec![
                    "/nix/store/p-ci-docker-prune/bin/ci-docker-prune".to_string(),
                    "--threshold".into(),
                    "75".into()
                ]
            )]
        );
        assert_eq!(s.on_calendar, vec!["hourly".to_string()]);
    }

    #[test]
    fn parsing() {
        assert_eq!(
            split_command(r#"-/bin/x "a b" 'c d' e\ f 100%% $$HOME"#),
            vec!["/bin/x", "a b", "c d", "e f", "100%", "$HOME"]
        );
        assert_eq!(timespan_us("1h"), Some(3_600_000_000));
        assert_eq!(timespan_us("1h 30min"), Some(5_400_000_000));
        assert_eq!(timespan_us("90"), Some(90_000_000));
        assert_eq!(timespan_us("0"), Some(0));
        assert_eq!(timespan_us("x"), None);
        let u = parse_unit_file("[Service]\nExecStart=/a\nExecStart=\nExecStart=/b \\\n  --c\n");
        assert_eq!(u["Service"]["ExecStart"], vec!["/b --c"]);
    }
}
