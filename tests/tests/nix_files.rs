//! The Nix side of the repository, checked on a host that has Nix (`nix-instantiate`) but
//! no nixpkgs:
//!
//! - every `.nix` file in the repository parses (`nix-instantiate --parse`);
//! - the NixOS module evaluates (`nix-instantiate --eval --strict`) under the stand-in
//!   module system in `nix/eval/standin.nix`, with the options, defaults, unit names and
//!   assertion the issue asks for;
//! - parity: the module (evaluated, and statically through the `ccci-nix` extractor), the
//!   portable units in `prune/systemd/` and the gate spec `verify/gates/2pc.toml` agree on
//!   unit names, schedule and flags — never `--all`, never volumes — and the comparison
//!   fails on mutated copies that disagree.
//!
//! What the stand-in evaluation does and does not prove is written in docs/nixos.md.
//! The VM tests (vm-tests/, `nix flake check`) cover the rest on a machine with nixpkgs.
//!
//! Without `nix-instantiate` (or, for the VM test scripts, `python3`) on PATH each test fails
//! naming what to install: a check that did not run never passes. The README's commands install
//! Debian's `nix-bin` and `python3`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

// The defaults of `ci-docker-prune` (the contract of DESIGN.md), taken from the crate itself:
// applied to flags a side omits, and the module's option defaults must equal them.
use ci_docker_prune::config::{DEFAULT_RUN_STACK_PATTERN, DEFAULT_THRESHOLD, DEFAULT_UNTIL};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// plumbing

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `nix-instantiate` on PATH, or None (then the caller fails naming what to install).
fn nix_instantiate() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("nix-instantiate"))
        .find(|p| p.is_file())
}

macro_rules! require_nix {
    () => {
        match nix_instantiate() {
            Some(p) => p,
            None => panic!(
                "nix-instantiate not found on PATH: install Nix (Debian: apt-get install nix-bin) to run the Nix file checks"
            ),
        }
    };
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Every `*.nix` file under `root`, skipping build output and VCS metadata.
fn nix_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {dir:?}: {e}"));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("read {dir:?}: {e}"));
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let ft = entry
                .file_type()
                .unwrap_or_else(|e| panic!("stat {path:?}: {e}"));
            if ft.is_dir() {
                if name == "target" || name.starts_with('.') || name == "node_modules" {
                    continue;
                }
                walk(&path, out);
            } else if ft.is_file() && name.ends_with(".nix") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out.sort();
    out
}

/// Files whose first line carries this marker are fixtures that must NOT parse
/// (e.g. for a parser's error path); the parse check asserts they fail.
const EXPECT_PARSE_ERROR: &str = "ccci-expect-parse-error";

/// Parse one file; Err(stderr) when it does not parse.
fn parse_file(nix: &Path, file: &Path) -> Result<(), String> {
    let out = run(Command::new(nix).arg("--parse").arg(file));
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Problems of the parse check over `files` (empty: all good).
fn parse_problems(nix: &Path, files: &[PathBuf]) -> Vec<String> {
    let mut problems = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let expect_error = text
            .lines()
            .next()
            .is_some_and(|l| l.contains(EXPECT_PARSE_ERROR));
        match (parse_file(nix, f), expect_error) {
            (Ok(()), false) | (Err(_), true) => {}
            (Err(e), false) => problems.push(format!("{}: does not parse: {e}", f.display())),
            (Ok(()), true) => problems.push(format!(
                "{}: marked {EXPECT_PARSE_ERROR} but parses",
                f.display()
            )),
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------
// evaluating the module with the stand-in module system

/// Evaluate `module` (default: the repo's) with `settings` (NixOS option values).
/// Ok(json) on success, Err(stderr) when evaluation fails (assertion, type error, ...).
fn eval_module(nix: &Path, module: Option<&Path>, settings: &Value) -> Result<Value, String> {
    let root = repo_root();
    let mut cmd = Command::new(nix);
    cmd.args(["--eval", "--strict", "--json"])
        .arg(root.join("nix/eval/eval-module.nix"))
        .args(["--argstr", "settings"])
        .arg(settings.to_string());
    if let Some(m) = module {
        cmd.args(["--arg", "module"]).arg(m);
    }
    let out = run(&mut cmd);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "evaluation printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn enabled() -> Value {
    json!({"services": {"ci-docker-prune": {"enable": true}}})
}

// ---------------------------------------------------------------------------------------
// systemd command lines and time spans

/// Split an `ExecStart=` value into argv the way systemd does (systemd.service(5),
/// "Command lines"): words separated by whitespace, "double" and 'single' quotes, C
/// escapes, `%%` for a literal `%` and `$$` for a literal `$`. A lone `%x` specifier or a
/// `$VAR` expansion is an error here: systemd would replace it, so the argument the
/// author wrote is not the argument the binary gets.
fn systemd_argv(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.trim().chars().peekable();
    // executable prefixes (-, @, +, !, :) only apply to the first word
    while let Some(c) = chars.peek() {
        if matches!(c, '-' | '@' | '+' | '!' | ':') {
            chars.next();
        } else {
            break;
        }
    }
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut raw = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, c) if c.is_whitespace() => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (Some('\''), c) => raw.push(c),
                (_, '\\') => match chars.next() {
                    Some('n') => raw.push('\n'),
                    Some('t') => raw.push('\t'),
                    Some('\\') => raw.push('\\'),
                    Some('"') => raw.push('"'),
                    Some('\'') => raw.push('\''),
                    Some(' ') => raw.push(' '),
                    Some(o) => return Err(format!("unsupported escape \\{o} in {line:?}")),
                    None => return Err(format!("trailing backslash in {line:?}")),
                },
                (_, c) => raw.push(c),
            }
        }
        if quote.is_some() {
            return Err(format!("unterminated quote in {line:?}"));
        }
        words.push(unescape_specifiers(&raw, line)?);
    }
    Ok(words)
}

fn unescape_specifiers(raw: &str, line: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut it = raw.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '%' | '$' => {
                if it.peek() == Some(&c) {
                    it.next();
                    out.push(c);
                } else if c == '$' && it.peek().is_none() {
                    // a trailing `$` is not an expansion
                    out.push(c);
                } else {
                    return Err(format!(
                        "`{c}` in {raw:?} would be expanded by systemd (write `{c}{c}`): {line:?}"
                    ));
                }
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// A systemd time span in seconds (systemd.time(7)): `1h`, `60min`, `3600`, `1h 30min` — with
/// the parser `repro.unit-config-git-eq-host` reads the host's units with (one definition).
fn timespan_secs(s: &str) -> Result<f64, String> {
    ccci_checks::repro::unit_config::timespan_us(s)
        .map(|us| us as f64 / 1e6)
        .ok_or_else(|| format!("bad time span {s:?}"))
}

fn systemd_bool(s: &str) -> Result<bool, String> {
    match s.trim() {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" => Ok(false),
        o => Err(format!("not a systemd boolean: {o:?}")),
    }
}

// ---------------------------------------------------------------------------------------
// the parity model: what each side says the prune unit does

/// `--path` default of the binary (its `Config::default()`; no flag means this one path).
fn default_path() -> String {
    ci_docker_prune::Config::default()
        .paths
        .first()
        .map(|p| p.to_string_lossy().into_owned())
        .expect("the binary has a default path")
}

/// One side's prune unit pair, normalised.
#[derive(Debug, Clone, PartialEq)]
struct Side {
    origin: String,
    /// Unit names with suffixes, e.g. {ci-docker-prune.service, ci-docker-prune.timer}.
    units: BTreeSet<String>,
    /// The unit the timer activates.
    timer_unit: String,
    argv: Vec<String>,
    on_calendar: Vec<String>,
    persistent: bool,
    randomized_delay_secs: f64,
    after: BTreeSet<String>,
    /// Units the service pulls up with it: `Requires=`, `Wants=`, `BindsTo=`, `Requisite=`.
    pulls_up: BTreeSet<String>,
    service_type: String,
    /// Every other `[Service]` setting (hardening, logging, scheduling), normalised.
    service: BTreeMap<String, Vec<String>>,
    /// `[Timer]` settings other than the ones compared above, normalised.
    timer: BTreeMap<String, Vec<String>>,
    wanted_by: BTreeSet<String>,
}

/// Settings compared on their own (command line, type, schedule, target unit).
const COMPARED_APART: [&str; 6] = [
    "ExecStart",
    "OnCalendar",
    "Persistent",
    "RandomizedDelaySec",
    "Unit",
    "Type",
];

/// A unit-file value as systemd reads it: booleans spelled one way, list entries apart.
fn normalise_setting(v: &str) -> Option<String> {
    let v = v.trim();
    match v {
        "" => None,
        "true" | "yes" | "on" => Some("yes".into()),
        "false" | "no" | "off" => Some("no".into()),
        v => Some(v.to_string()),
    }
}

/// A NixOS `serviceConfig`/`timerConfig` value the way NixOS renders it into a unit file.
fn nix_setting(v: &Value) -> Vec<String> {
    match v {
        Value::Bool(b) => vec![if *b { "yes" } else { "no" }.to_string()],
        Value::Number(n) => vec![n.to_string()],
        Value::String(s) => normalise_setting(s).into_iter().collect(),
        Value::Array(a) => a.iter().flat_map(nix_setting).collect(),
        _ => vec![format!("{v}")],
    }
}

fn nix_settings(v: &Value) -> BTreeMap<String, Vec<String>> {
    v.as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| !COMPARED_APART.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), nix_setting(v)))
                .collect()
        })
        .unwrap_or_default()
}

fn unit_settings(
    m: &BTreeMap<(String, String), Vec<String>>,
    section: &str,
) -> BTreeMap<String, Vec<String>> {
    m.iter()
        .filter(|((s, k), _)| s == section && !COMPARED_APART.contains(&k.as_str()))
        .map(|((_, k), v)| {
            (
                k.clone(),
                v.iter().filter_map(|x| normalise_setting(x)).collect(),
            )
        })
        .collect()
}

/// The effective invocation: flags with contract defaults for the ones not given.
#[derive(Debug, Clone, PartialEq)]
struct Invocation {
    program: String,
    threshold: String,
    paths: Vec<String>,
    until: String,
    run_stack_pattern: String,
    /// Anything else on the command line (a different config, `--dry-run`, ...).
    other: Vec<String>,
}

fn invocation(argv: &[String]) -> Result<Invocation, String> {
    let (program, args) = argv.split_first().ok_or("empty command line")?;
    let program = Path::new(program)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut inv = Invocation {
        program,
        threshold: DEFAULT_THRESHOLD.to_string(),
        paths: Vec::new(),
        until: DEFAULT_UNTIL.into(),
        run_stack_pattern: DEFAULT_RUN_STACK_PATTERN.into(),
        other: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = || -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it.next().cloned().ok_or(format!("{flag} without a value")),
            }
        };
        match flag {
            "--threshold" => inv.threshold = value()?,
            "--path" => inv.paths.push(value()?),
            "--until" => inv.until = value()?,
            "--run-stack-pattern" => inv.run_stack_pattern = value()?,
            _ => inv.other.push(a.clone()),
        }
    }
    if inv.paths.is_empty() {
        inv.paths.push(default_path());
    }
    Ok(inv)
}

/// The module side, from the stand-in evaluation's JSON.
fn module_side(eval: &Value) -> Result<Side, String> {
    let services = eval["services"]
        .as_object()
        .ok_or("no services in evaluation")?;
    let timers = eval["timers"]
        .as_object()
        .ok_or("no timers in evaluation")?;
    let mut units: BTreeSet<String> = services.keys().map(|n| format!("{n}.service")).collect();
    units.extend(timers.keys().map(|n| format!("{n}.timer")));
    let (_, svc) = services
        .iter()
        .next()
        .ok_or("the module defines no service")?;
    let (timer_name, timer) = timers.iter().next().ok_or("the module defines no timer")?;
    let sc = &svc["serviceConfig"];
    let tc = &timer["timerConfig"];
    let exec = sc["ExecStart"]
        .as_str()
        .ok_or("ExecStart is not a string")?;
    let on_calendar = match &tc["OnCalendar"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        other => return Err(format!("OnCalendar is {other}")),
    };
    let delay = match &tc["RandomizedDelaySec"] {
        Value::String(s) => timespan_secs(s)?,
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::Null => 0.0,
        other => return Err(format!("RandomizedDelaySec is {other}")),
    };
    let strs = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(Side {
        origin: "nix/modules/docker-prune.nix (evaluated)".into(),
        units,
        timer_unit: tc["Unit"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| format!("{timer_name}.service")),
        argv: systemd_argv(exec)?,
        on_calendar,
        persistent: tc["Persistent"].as_bool().unwrap_or(false),
        randomized_delay_secs: delay,
        after: strs(&svc["after"]),
        pulls_up: ["requires", "wants", "bindsTo", "requisite"]
            .iter()
            .flat_map(|k| strs(&svc[*k]))
            .collect(),
        service_type: sc["Type"].as_str().unwrap_or("simple").to_string(),
        service: nix_settings(sc),
        timer: nix_settings(tc),
        wanted_by: strs(&timer["wantedBy"]),
    })
}

/// A systemd unit file as (section, key) -> values, in order.
fn parse_unit_file(text: &str) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';'))
        {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        let full = format!("{pending}{line}");
        pending.clear();
        if full.starts_with('[') && full.ends_with(']') {
            section = full[1..full.len() - 1].to_string();
        } else if let Some((k, v)) = full.split_once('=') {
            let key = (section.clone(), k.trim().to_string());
            let v = v.trim().to_string();
            if v.is_empty() {
                out.insert(key, Vec::new()); // an empty assignment resets the setting
            } else {
                out.entry(key).or_default().push(v);
            }
        }
    }
    out
}

/// The portable side, from the unit files in `dir`.
fn portable_side(dir: &Path) -> Result<Side, String> {
    let mut units = BTreeSet::new();
    let mut service = None;
    let mut timer = None;
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let text =
            std::fs::read_to_string(e.path()).map_err(|err| format!("read {name}: {err}"))?;
        if name.ends_with(".service") {
            units.insert(name.clone());
            service = Some((name, parse_unit_file(&text)));
        } else if name.ends_with(".timer") {
            units.insert(name.clone());
            timer = Some((name, parse_unit_file(&text)));
        }
    }
    let (_, svc) = service.ok_or("no .service in prune/systemd")?;
    let (timer_name, tmr) = timer.ok_or("no .timer in prune/systemd")?;
    let get = |m: &BTreeMap<(String, String), Vec<String>>, s: &str, k: &str| {
        m.get(&(s.to_string(), k.to_string()))
            .cloned()
            .unwrap_or_default()
    };
    let words = |v: Vec<String>| -> BTreeSet<String> {
        v.iter()
            .flat_map(|s| s.split_whitespace().map(String::from))
            .collect()
    };
    let exec = get(&svc, "Service", "ExecStart");
    if exec.len() != 1 {
        return Err(format!("expected one ExecStart=, found {}", exec.len()));
    }
    let delay = get(&tmr, "Timer", "RandomizedDelaySec");
    let persistent = get(&tmr, "Timer", "Persistent");
    Ok(Side {
        origin: format!("{} (portable units)", dir.display()),
        units,
        timer_unit: get(&tmr, "Timer", "Unit")
            .last()
            .cloned()
            .unwrap_or_else(|| timer_name.replace(".timer", ".service")),
        argv: systemd_argv(&exec[0])?,
        on_calendar: get(&tmr, "Timer", "OnCalendar"),
        persistent: match persistent.last() {
            Some(p) => systemd_bool(p)?,
            None => false,
        },
        randomized_delay_secs: match delay.last() {
            Some(d) => timespan_secs(d)?,
            None => 0.0,
        },
        after: words(get(&svc, "Unit", "After")),
        pulls_up: ["Requires", "Wants", "BindsTo", "Requisite"]
            .iter()
            .flat_map(|k| words(get(&svc, "Unit", k)))
            .collect(),
        service_type: get(&svc, "Service", "Type")
            .last()
            .cloned()
            .unwrap_or_else(|| "simple".into()),
        service: unit_settings(&svc, "Service"),
        timer: unit_settings(&tmr, "Timer"),
        wanted_by: words(get(&tmr, "Install", "WantedBy")),
    })
}

/// Unit names the gate spec's parameters mention (any string value ending in a unit
/// suffix), and its check ids.
struct GateSide {
    unit_names: BTreeSet<String>,
    check_ids: BTreeSet<String>,
    threshold: Option<i64>,
}

fn gate_side(path: &Path) -> Result<GateSide, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let spec = ccci_core::GateSpec::parse(&text, &path.display().to_string())
        .map_err(|e| e.to_string())?;
    let mut unit_names = BTreeSet::new();
    let params = serde_json::to_value(&spec.params).map_err(|e| e.to_string())?;
    let targets = serde_json::to_value(&spec.targets).map_err(|e| e.to_string())?;
    fn collect(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::String(s) => {
                for w in s.split(|c: char| c.is_whitespace() || c == ',') {
                    if w.ends_with(".service") || w.ends_with(".timer") {
                        out.insert(w.to_string());
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            Value::Object(o) => o.values().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
    collect(&params, &mut unit_names);
    collect(&targets, &mut unit_names);
    Ok(GateSide {
        unit_names,
        check_ids: spec.checks.iter().map(|c| c.id.clone()).collect(),
        threshold: params.get("threshold").and_then(Value::as_i64),
    })
}

/// Names the module system reserves for the NixOS docker module's autoPrune.
const LEGACY_UNITS: [&str; 2] = ["docker-prune.service", "docker-prune.timer"];

/// Check ids of gate 2pc that hold the deployed units to this parity.
const PARITY_CHECKS: [&str; 4] = [
    "units.legacy-timer-absent",
    "units.prune-timer-active",
    "units.prune-service-loaded",
    "prune.never-all-never-volumes",
];

/// Every disagreement between the sides (empty: they agree).
fn parity_problems(
    module: &Side,
    extracted: &BTreeSet<String>,
    portable: &Side,
    gate: &Result<GateSide, String>,
) -> Vec<String> {
    let mut p = Vec::new();
    for side in [module, portable] {
        // what no side may ever ask for: the rule prune.never-all-never-volumes decides with
        let bad = ccci_checks::never_all::forbidden_args(&side.argv);
        if !bad.is_empty() {
            p.push(format!(
                "{}: forbidden arguments {bad:?} (never --all, never volumes)",
                side.origin
            ));
        }
        for legacy in LEGACY_UNITS {
            if side.units.contains(legacy) {
                p.push(format!(
                    "{}: declares {legacy}, a name the NixOS docker module owns",
                    side.origin
                ));
            }
        }
        if !side.units.contains(&side.timer_unit) {
            p.push(format!(
                "{}: the timer activates {} which is not among its units {:?}",
                side.origin, side.timer_unit, side.units
            ));
        }
        if side.service_type != "oneshot" {
            p.push(format!(
                "{}: service Type={} (want oneshot)",
                side.origin, side.service_type
            ));
        }
        if !side.after.contains("docker.service") {
            p.push(format!("{}: After= lacks docker.service", side.origin));
        }
        // Ordered after Docker, never pulling it up: a run below the threshold must not start
        // a deliberately stopped Docker (issue 11 item 5; docs/prune-policy.md, "systemd").
        if side.pulls_up.contains("docker.service") {
            p.push(format!(
                "{}: pulls docker.service up (Requires=/Wants=/BindsTo=/Requisite=)",
                side.origin
            ));
        }
    }
    if &module.units != extracted {
        p.push(format!(
            "unit names: evaluated module {:?} != statically extracted (ccci-nix) {:?}",
            module.units, extracted
        ));
    }
    if module.units != portable.units {
        p.push(format!(
            "unit names: module {:?} != portable {:?}",
            module.units, portable.units
        ));
    }
    if module.timer_unit != portable.timer_unit {
        p.push(format!(
            "timer target: module {} != portable {}",
            module.timer_unit, portable.timer_unit
        ));
    }
    if module.on_calendar != portable.on_calendar {
        p.push(format!(
            "schedule: module OnCalendar {:?} != portable {:?}",
            module.on_calendar, portable.on_calendar
        ));
    }
    if module.persistent != portable.persistent {
        p.push(format!(
            "Persistent: module {} != portable {}",
            module.persistent, portable.persistent
        ));
    }
    for (what, m, u) in [
        ("[Service]", &module.service, &portable.service),
        ("[Timer]", &module.timer, &portable.timer),
    ] {
        let keys: BTreeSet<&String> = m.keys().chain(u.keys()).collect();
        for k in keys {
            if m.get(k) != u.get(k) {
                p.push(format!(
                    "{what} {k}: module {:?} != portable {:?}",
                    m.get(k),
                    u.get(k)
                ));
            }
        }
    }
    if module.wanted_by != portable.wanted_by {
        p.push(format!(
            "timer WantedBy: module {:?} != portable {:?}",
            module.wanted_by, portable.wanted_by
        ));
    }
    if module.randomized_delay_secs != portable.randomized_delay_secs {
        p.push(format!(
            "RandomizedDelaySec: module {}s != portable {}s",
            module.randomized_delay_secs, portable.randomized_delay_secs
        ));
    }
    match (invocation(&module.argv), invocation(&portable.argv)) {
        (Ok(m), Ok(u)) => {
            if m.program != "ci-docker-prune" || u.program != "ci-docker-prune" {
                p.push(format!(
                    "program: module runs {}, portable runs {}",
                    m.program, u.program
                ));
            }
            if m.threshold != u.threshold
                || m.paths != u.paths
                || m.until != u.until
                || m.run_stack_pattern != u.run_stack_pattern
                || m.other != u.other
            {
                p.push(format!("flags: module {m:?} != portable {u:?}"));
            }
            if let Some(t) = gate.as_ref().ok().and_then(|g| g.threshold) {
                if m.threshold != t.to_string() {
                    p.push(format!(
                        "threshold: gate spec {t} != module {}",
                        m.threshold
                    ));
                }
            }
        }
        (m, u) => p.push(format!("command line: module {m:?}, portable {u:?}")),
    }
    let gate = match gate {
        Ok(g) => g,
        Err(e) => {
            p.push(format!("gate spec: {e}"));
            return p;
        }
    };
    for id in PARITY_CHECKS {
        if !gate.check_ids.contains(id) {
            p.push(format!("gate spec lacks check {id}"));
        }
    }
    for unit in &module.units {
        if !gate.unit_names.contains(unit) {
            p.push(format!(
                "gate spec does not name {unit}, which the module declares"
            ));
        }
    }
    for legacy in LEGACY_UNITS {
        if !gate.unit_names.contains(legacy) {
            p.push(format!(
                "gate spec does not name the legacy {legacy} (it must be checked absent)"
            ));
        }
    }
    for name in &gate.unit_names {
        let legacy = LEGACY_UNITS.contains(&name.as_str());
        if !legacy && !module.units.contains(name) && name != "docker.service" {
            p.push(format!(
                "gate spec names {name}, which the module does not declare"
            ));
        }
    }
    p
}

/// All three sides from files: `module` (None: the repo's), units dir, gate spec.
fn parity_for(nix: &Path, module: Option<&Path>, units_dir: &Path, gate: &Path) -> Vec<String> {
    let root = repo_root();
    let module_path = module
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root.join("nix/modules/docker-prune.nix"));
    let mut problems = Vec::new();
    let eval = match eval_module(nix, module, &enabled()) {
        Ok(v) => v,
        Err(e) => return vec![format!("module does not evaluate: {e}")],
    };
    let text = std::fs::read_to_string(&module_path).unwrap_or_default();
    let extracted: BTreeSet<String> =
        match ccci_nix::extract_units("nix/modules/docker-prune.nix", &text) {
            Ok(fu) => {
                for u in &fu.unresolved {
                    problems.push(format!(
                        "ccci-nix cannot resolve a unit at line {}: {}",
                        u.line, u.text
                    ));
                }
                fu.units.into_iter().map(|u| u.name).collect()
            }
            Err(e) => return vec![format!("ccci-nix: {e}")],
        };
    match (module_side(&eval), portable_side(units_dir)) {
        (Ok(m), Ok(u)) => problems.extend(parity_problems(&m, &extracted, &u, &gate_side(gate))),
        (m, u) => problems.push(format!(
            "cannot read a side: module {:?} / portable {:?}",
            m.err(),
            u.err()
        )),
    }
    problems
}

fn units_dir() -> PathBuf {
    repo_root().join("prune/systemd")
}
fn gate_spec() -> PathBuf {
    repo_root().join("verify/gates/2pc.toml")
}

/// A copy of the repo's module with `from` replaced by `to` (which must occur).
fn mutated_module(dir: &Path, from: &str, to: &str) -> PathBuf {
    let src = repo_root().join("nix/modules/docker-prune.nix");
    let text = std::fs::read_to_string(&src).expect("read the module");
    assert!(
        text.contains(from),
        "mutation anchor {from:?} not in the module"
    );
    let path = dir.join("docker-prune.nix");
    std::fs::write(&path, text.replacen(from, to, 1)).expect("write mutated module");
    path
}

/// A copy of prune/systemd with `from` replaced by `to` in `file` (which must contain it).
fn mutated_units(dir: &Path, file: &str, from: &str, to: &str) -> PathBuf {
    let out = dir.join("systemd");
    std::fs::create_dir_all(&out).expect("mkdir");
    for e in std::fs::read_dir(units_dir()).expect("read prune/systemd") {
        let e = e.expect("dir entry");
        let mut text = std::fs::read_to_string(e.path()).expect("read unit");
        if e.file_name().to_string_lossy() == file {
            assert!(
                text.contains(from),
                "mutation anchor {from:?} not in {file}"
            );
            text = text.replacen(from, to, 1);
        }
        std::fs::write(out.join(e.file_name()), text).expect("write unit");
    }
    out
}

// ---------------------------------------------------------------------------------------
// tests: parsing

#[test]
fn every_nix_file_in_the_repo_parses() {
    let nix = require_nix!();
    let root = repo_root();
    let files = nix_files(&root);
    let rel: BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.strip_prefix(&root).ok())
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    for must in [
        "flake.nix",
        "nix/modules/docker-prune.nix",
        "nix/package.nix",
        "nix/eval/standin.nix",
        "vm-tests/default.nix",
        "vm-tests/prune-policy.nix",
        "vm-tests/cache.nix",
        "vm-tests/gate.nix",
    ] {
        assert!(rel.contains(must), "{must} not found among {rel:?}");
    }
    let problems = parse_problems(&nix, &files);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    eprintln!("parsed {} .nix files", files.len());
}

#[test]
fn parse_check_fails_on_a_broken_file() {
    let nix = require_nix!();
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("broken.nix");
    std::fs::write(
        &broken,
        "{ config, lib, ... }: { systemd.services.x = { ; }",
    )
    .expect("write");
    let marked = dir.path().join("marked.nix");
    std::fs::write(&marked, format!("# {EXPECT_PARSE_ERROR}\n{{ a = 1; }}\n")).expect("write");
    let good = dir.path().join("good.nix");
    std::fs::write(&good, "{ a = 1; }\n").expect("write");
    let problems = parse_problems(&nix, &[broken.clone(), marked.clone(), good]);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("broken.nix: does not parse"),
        "{problems:?}"
    );
    assert!(problems[1].contains("marked.nix: marked"), "{problems:?}");
}

// ---------------------------------------------------------------------------------------
// tests: the module under the stand-in module system

#[test]
fn module_declares_the_options_of_issue_6_with_types_descriptions_defaults() {
    let nix = require_nix!();
    let eval = eval_module(&nix, None, &json!({})).expect("module evaluates");
    let opts = eval["options"].as_object().expect("options");
    let names: BTreeSet<&str> = opts.keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = [
        "enable",
        "package",
        "threshold",
        "paths",
        "until",
        "runStackPattern",
        "evict",
        "evictLowWatermark",
        "evictKeepRecent",
        "schedule",
        "randomizedDelaySec",
        "persistent",
        "metricsFile",
    ]
    .into();
    assert_eq!(names, want);
    for (name, o) in opts {
        let desc = o["description"].as_str().unwrap_or_default();
        assert!(
            desc.trim().len() > 20,
            "{name}: description missing or too short: {desc:?}"
        );
        assert!(
            o["type"].as_str().is_some_and(|t| !t.is_empty()),
            "{name}: no type"
        );
        assert_eq!(o["hasDefault"], json!(true), "{name}: no default");
    }
    assert_eq!(opts["enable"]["default"], json!(false));
    assert_eq!(opts["threshold"]["default"], json!(DEFAULT_THRESHOLD));
    assert_eq!(opts["threshold"]["type"], json!("intBetween"));
    assert_eq!(opts["paths"]["default"], json!([default_path()]));
    assert_eq!(opts["until"]["default"], json!(DEFAULT_UNTIL));
    assert_eq!(
        opts["runStackPattern"]["default"],
        json!(DEFAULT_RUN_STACK_PATTERN)
    );
    assert_eq!(opts["schedule"]["default"], json!("daily"));
    assert_eq!(opts["persistent"]["default"], json!(true));
    assert_eq!(opts["package"]["type"], json!("package"));
}

#[test]
fn disabled_module_defines_nothing() {
    let nix = require_nix!();
    let eval = eval_module(
        &nix,
        None,
        &json!({"services": {"ci-docker-prune": {"enable": false}},
                "virtualisation": {"docker": {"autoPrune": {"enable": true}}}}),
    )
    .expect("a disabled module evaluates, even alongside autoPrune");
    assert_eq!(eval["services"], json!({}));
    assert_eq!(eval["timers"], json!({}));
    assert_eq!(eval["assertions"], json!([]));
}

#[test]
fn enabled_module_defines_the_service_and_an_explicit_timer() {
    let nix = require_nix!();
    let eval = eval_module(&nix, None, &enabled()).expect("module evaluates");
    let services: BTreeSet<&String> = eval["services"]
        .as_object()
        .expect("services")
        .keys()
        .collect();
    let timers: BTreeSet<&String> = eval["timers"].as_object().expect("timers").keys().collect();
    assert_eq!(services, BTreeSet::from([&"ci-docker-prune".to_string()]));
    assert_eq!(timers, BTreeSet::from([&"ci-docker-prune".to_string()]));
    let svc = &eval["services"]["ci-docker-prune"];
    assert_eq!(svc["serviceConfig"]["Type"], json!("oneshot"));
    assert_eq!(svc["after"], json!(["docker.service"]));
    for pull in ["requires", "wants", "bindsTo", "requisite"] {
        assert!(
            svc[pull].as_array().is_none_or(Vec::is_empty),
            "{pull}: {}",
            svc[pull]
        );
    }
    assert_eq!(svc["restartIfChanged"], json!(false));
    assert!(
        svc.get("startAt").is_none(),
        "the timer must be explicit, not startAt"
    );
    let t = &eval["timers"]["ci-docker-prune"];
    assert_eq!(t["wantedBy"], json!(["timers.target"]));
    assert_eq!(t["timerConfig"]["OnCalendar"], json!("daily"));
    assert_eq!(t["timerConfig"]["Persistent"], json!(true));
    let argv = systemd_argv(
        svc["serviceConfig"]["ExecStart"]
            .as_str()
            .expect("ExecStart"),
    )
    .expect("argv");
    let pkg = eval["packagePath"].as_str().expect("packagePath");
    assert_eq!(
        argv,
        [
            &format!("{pkg}/bin/ci-docker-prune"),
            "--threshold",
            "80",
            "--path",
            "/",
            "--until",
            "24h",
            "--run-stack-pattern",
            DEFAULT_RUN_STACK_PATTERN,
            "--evict-low-watermark",
            "70",
            "--evict-keep-recent",
            "14d"
        ]
    );
}

#[test]
fn options_flow_into_the_units_and_survive_systemd_quoting() {
    let nix = require_nix!();
    // `$` and `%` are special in ExecStart= even inside quotes; a space splits words.
    let pattern = "^(ci|run)-[0-9a-f]{6}_x$ 100%";
    let eval = eval_module(
        &nix,
        None,
        &json!({"services": {"ci-docker-prune": {
            "enable": true, "threshold": 90, "paths": ["/", "/var/lib/docker"],
            "until": "48h", "runStackPattern": pattern, "schedule": "*-*-* 03:00:00",
            "randomizedDelaySec": "45min", "persistent": false,
            "evict": false, "evictLowWatermark": 60, "evictKeepRecent": "30d"}}}),
    )
    .expect("module evaluates");
    let argv = systemd_argv(
        eval["services"]["ci-docker-prune"]["serviceConfig"]["ExecStart"]
            .as_str()
            .expect("ExecStart"),
    )
    .expect("ExecStart is valid for systemd");
    let inv = invocation(&argv).expect("argv");
    assert_eq!(inv.threshold, "90");
    assert_eq!(inv.paths, ["/", "/var/lib/docker"]);
    assert_eq!(inv.until, "48h");
    assert_eq!(inv.run_stack_pattern, pattern);
    assert_eq!(
        inv.other,
        [
            "--evict-low-watermark",
            "60",
            "--evict-keep-recent",
            "30d",
            "--no-evict"
        ]
    );
    let tc = &eval["timers"]["ci-docker-prune"]["timerConfig"];
    assert_eq!(tc["OnCalendar"], json!("*-*-* 03:00:00"));
    assert_eq!(tc["RandomizedDelaySec"], json!("45min"));
    assert_eq!(tc["Persistent"], json!(false));
}

#[test]
fn systemd_quoting_check_catches_unescaped_specifiers() {
    // the check used above must be able to fail: shell quoting is not systemd quoting
    assert!(
        systemd_argv("/bin/x --run-stack-pattern '^a$'").is_ok(),
        "trailing $ is literal"
    );
    assert!(systemd_argv("/bin/x --run-stack-pattern '^a$HOME'").is_err());
    assert!(systemd_argv("/bin/x --path '/100%'").is_err());
    assert_eq!(
        systemd_argv("/bin/x \"a b\" 'c d' e%%f g$$h").expect("valid"),
        ["/bin/x", "a b", "c d", "e%f", "g$h"]
    );
}

#[test]
fn autoprune_alongside_the_module_fails_on_the_assertion() {
    let nix = require_nix!();
    let err = eval_module(
        &nix,
        None,
        &json!({"services": {"ci-docker-prune": {"enable": true}},
                "virtualisation": {"docker": {"autoPrune": {"enable": true}}}}),
    )
    .expect_err("autoPrune + ci-docker-prune must not evaluate");
    assert!(err.contains("Failed assertions"), "{err}");
    assert!(
        err.contains("--all"),
        "the message must say why (--all): {err}"
    );
    assert!(err.contains("virtualisation.docker.autoPrune"), "{err}");
}

/// The binary exits 2 at every run when the low watermark is not below the threshold (the
/// module always passes `--evict-low-watermark`): the module refuses it at evaluation, naming
/// both values; a watermark below a lowered threshold evaluates.
#[test]
fn a_low_watermark_not_below_the_threshold_fails_on_the_assertion() {
    let nix = require_nix!();
    for (threshold, watermark) in [(70, 70), (60, 70)] {
        let err = eval_module(
            &nix,
            None,
            &json!({"services": {"ci-docker-prune": {"enable": true, "threshold": threshold}}}),
        )
        .expect_err("the default watermark (70) is not below this threshold");
        assert!(err.contains("Failed assertions"), "{err}");
        assert!(
            err.contains(&format!("evictLowWatermark ({watermark})"))
                && err.contains(&format!("threshold ({threshold})")),
            "{err}"
        );
    }
    let ok = eval_module(
        &nix,
        None,
        &json!({"services": {"ci-docker-prune": {"enable": true, "threshold": 60, "evictLowWatermark": 50}}}),
    )
    .expect("a watermark below the threshold evaluates");
    let exec = ok["services"]["ci-docker-prune"]["serviceConfig"]["ExecStart"]
        .as_str()
        .unwrap_or_default();
    assert!(
        exec.contains("\"--threshold\" \"60\"")
            && exec.contains("\"--evict-low-watermark\" \"50\""),
        "{exec}"
    );
}

#[test]
fn bad_option_values_are_refused_at_evaluation() {
    let nix = require_nix!();
    for (settings, needle) in [
        (
            json!({"threshold": 101}),
            "services.ci-docker-prune.threshold' is not of type",
        ),
        (
            json!({"threshold": "80"}),
            "services.ci-docker-prune.threshold' is not of type",
        ),
        (
            json!({"paths": []}),
            "services.ci-docker-prune.paths' is not of type",
        ),
        (
            json!({"paths": ["relative"]}),
            "services.ci-docker-prune.paths' is not of type",
        ),
        (
            json!({"persistent": "yes"}),
            "services.ci-docker-prune.persistent' is not of type",
        ),
        (
            json!({"treshold": 80}),
            "services.ci-docker-prune.treshold' does not exist",
        ),
    ] {
        let mut cfg = settings.clone();
        cfg["enable"] = json!(true);
        let err = eval_module(&nix, None, &json!({"services": {"ci-docker-prune": cfg}}))
            .expect_err(&format!("{settings} must be refused"));
        assert!(err.contains(needle), "{settings}: {err}");
    }
}

// ---------------------------------------------------------------------------------------
// tests: parity between the module, the portable units and the gate spec

#[test]
fn module_portable_units_and_gate_spec_agree() {
    let nix = require_nix!();
    let problems = parity_for(&nix, None, &units_dir(), &gate_spec());
    assert!(
        problems.is_empty(),
        "parity broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn parity_fails_when_the_module_adds_all() {
    let nix = require_nix!();
    let dir = tempfile::tempdir().expect("tempdir");
    let m = mutated_module(
        dir.path(),
        "\"--until\"\n      cfg.until",
        "\"--all\"\n      \"--until\"\n      cfg.until",
    );
    let problems = parity_for(&nix, Some(&m), &units_dir(), &gate_spec());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("forbidden arguments [\"--all\"]")),
        "{problems:?}"
    );
}

#[test]
fn parity_fails_when_the_module_prunes_volumes() {
    let nix = require_nix!();
    let dir = tempfile::tempdir().expect("tempdir");
    let m = mutated_module(
        dir.path(),
        "\"--until\"\n      cfg.until",
        "\"--volumes\"\n      \"--until\"\n      cfg.until",
    );
    let problems = parity_for(&nix, Some(&m), &units_dir(), &gate_spec());
    assert!(
        problems.iter().any(|p| p.contains("--volumes")),
        "{problems:?}"
    );
}

#[test]
fn parity_fails_when_the_module_renames_the_timer_back_to_docker_prune() {
    let nix = require_nix!();
    let dir = tempfile::tempdir().expect("tempdir");
    let m = mutated_module(
        dir.path(),
        "systemd.timers.ci-docker-prune",
        "systemd.timers.docker-prune",
    );
    let problems = parity_for(&nix, Some(&m), &units_dir(), &gate_spec());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("declares docker-prune.timer")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("unit names: module")),
        "{problems:?}"
    );
}

#[test]
fn parity_fails_when_the_schedule_or_flags_differ() {
    let nix = require_nix!();
    let dir = tempfile::tempdir().expect("tempdir");
    let u = mutated_units(
        dir.path(),
        "ci-docker-prune.timer",
        "OnCalendar=daily",
        "OnCalendar=weekly",
    );
    let problems = parity_for(&nix, None, &u, &gate_spec());
    assert!(
        problems.iter().any(|p| p.starts_with("schedule:")),
        "{problems:?}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let u = mutated_units(
        dir.path(),
        "ci-docker-prune.service",
        "--threshold 80",
        "--threshold 90",
    );
    let problems = parity_for(&nix, None, &u, &gate_spec());
    assert!(
        problems.iter().any(|p| p.starts_with("flags:")),
        "{problems:?}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let m = mutated_module(dir.path(), "default = \"1h\";", "default = \"2h\";");
    let problems = parity_for(&nix, Some(&m), &units_dir(), &gate_spec());
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("RandomizedDelaySec:")),
        "{problems:?}"
    );
}

#[test]
fn parity_fails_when_a_unit_pulls_docker_up() {
    let nix = require_nix!();
    let dir = tempfile::tempdir().expect("tempdir");
    let u = mutated_units(
        dir.path(),
        "ci-docker-prune.service",
        "\nAfter=docker.service",
        "\nRequires=docker.service\nAfter=docker.service",
    );
    let problems = parity_for(&nix, None, &u, &gate_spec());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("(portable units): pulls docker.service up")),
        "{problems:?}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let m = mutated_module(
        dir.path(),
        "after = [ \"docker.service\" ];",
        "after = [ \"docker.service\" ];\n      wants = [ \"docker.service\" ];",
    );
    let problems = parity_for(&nix, Some(&m), &units_dir(), &gate_spec());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("(evaluated): pulls docker.service up")),
        "{problems:?}"
    );
}

#[test]
fn parity_fails_when_a_unit_hides_from_the_static_extractor() {
    // a unit name the extractor cannot resolve (computed) is a parity failure, not a pass
    let nix = require_nix!();
    let dir = tempfile::tempdir().expect("tempdir");
    let m = mutated_module(
        dir.path(),
        "systemd.timers.ci-docker-prune = {",
        "systemd.timers.${builtins.concatStringsSep \"-\" [ \"ci\" \"docker\" \"prune\" ]} = {",
    );
    let problems = parity_for(&nix, Some(&m), &units_dir(), &gate_spec());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("ccci-nix cannot resolve") || p.contains("statically extracted")),
        "{problems:?}"
    );
}

// ---------------------------------------------------------------------------------------
// tests: the flake's shape, evaluated against a stand-in nixpkgs (nix/eval/flake-outputs.nix)

fn eval_flake(nix: &Path) -> Value {
    let out = run(Command::new(nix)
        .args(["--eval", "--strict", "--json"])
        .arg(repo_root().join("nix/eval/flake-outputs.nix")));
    assert!(
        out.status.success(),
        "flake outputs do not evaluate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("flake-outputs.nix prints JSON")
}

fn names(v: &Value) -> BTreeSet<String> {
    match v {
        Value::Object(o) => o.keys().cloned().collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => BTreeSet::new(),
    }
}

#[test]
fn flake_exposes_packages_modules_checks_and_a_dev_shell() {
    let nix = require_nix!();
    let f = eval_flake(&nix);
    let set = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        names(&f["packages"]),
        set(&["ci-docker-prune", "ccci-verify", "default"])
    );
    assert_eq!(
        names(&f["nixosModules"]),
        set(&["ci-docker-prune", "default"])
    );
    let module = repo_root().join("nix/modules/docker-prune.nix");
    assert_eq!(
        f["nixosModules"]["ci-docker-prune"],
        json!(module.to_string_lossy())
    );
    assert_eq!(
        f["nixosModules"]["default"],
        json!(module.to_string_lossy())
    );
    assert_eq!(
        names(&f["checks"]),
        set(&["module-eval", "vm-prune-policy", "vm-cache", "vm-gate"])
    );
    assert_eq!(names(&f["devShell"]), set(&["default"]));
}

#[test]
fn packages_build_the_workspace_from_the_committed_lock_file() {
    let nix = require_nix!();
    let f = eval_flake(&nix);
    let root = repo_root();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let version = manifest
        .lines()
        .skip_while(|l| l.trim() != "[workspace.package]")
        .find_map(|l| l.trim().strip_prefix("version = "))
        .expect("workspace version")
        .trim_matches('"')
        .to_string();
    // every workspace member must be in the filtered source, or cargo cannot load it
    let members: Vec<String> = manifest
        .split("members = [")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .expect("workspace members")
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect();
    for (pkg, bins) in [
        ("ci-docker-prune", vec!["ci-docker-prune"]),
        ("ccci-verify", vec!["ccci-verify"]),
        ("default", vec!["ci-docker-prune", "ccci-verify"]),
    ] {
        let p = &f["packages"][pkg];
        assert_eq!(
            p["doCheck"],
            json!(false),
            "{pkg}: tests need a daemon; doCheck = false"
        );
        assert_eq!(
            p["lockFile"],
            json!(root.join("Cargo.lock").to_string_lossy()),
            "{pkg}"
        );
        assert_eq!(p["version"], json!(version), "{pkg}");
        let flags: Vec<String> = bins
            .iter()
            .flat_map(|b| ["-p".to_string(), b.to_string()])
            .collect();
        assert_eq!(p["cargoBuildFlags"], json!(flags), "{pkg}");
        let files = names(&p["srcFiles"]);
        for must in ["Cargo.toml", "Cargo.lock"]
            .iter()
            .map(|s| s.to_string())
            .chain(members.clone())
        {
            assert!(
                files.contains(&must),
                "{pkg}: source lacks {must}: {files:?}"
            );
        }
        for never in ["docs", "nix", "vm-tests", "target", "flake.nix"] {
            assert!(
                !files.contains(never),
                "{pkg}: source should not contain {never}"
            );
        }
    }
}

#[test]
fn vm_tests_cover_issue_6_item_4_and_their_scripts_are_python() {
    let nix = require_nix!();
    let f = eval_flake(&nix);
    let t = &f["vmTests"];
    let script = |name: &str| {
        t[name]["testScript"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let must = |name: &str, needles: &[&str]| {
        let s = script(name);
        for n in needles {
            assert!(s.contains(n), "{name}: test script lacks {n:?}");
        }
    };
    // every test: registry in the VM, image pushed from dockerTools, swarm
    for name in ["vm-prune-policy", "vm-cache", "vm-gate"] {
        must(
            name,
            &[
                "docker-registry.service",
                "docker push 127.0.0.1:5000/library/redis:7-alpine",
                "docker swarm init",
            ],
        );
    }
    must(
        "vm-prune-policy",
        &[
            "docker-prune.timer",
            "not-found",
            "ci-docker-prune.timer",
            "systemctl start ci-docker-prune.service",
            "keeping local image cache",
            // issue 21: the module's metrics file appears after a run, node_exporter serves it
            "--metrics-file /var/lib/prometheus-node-exporter-text/ci-docker-prune.prom",
            "ci_docker_prune_last_run_outcome{outcome=\"skipped\"} 1",
            "localhost:9100/metrics",
        ],
    );
    must(
        "vm-cache",
        &[
            "docker service create",
            "docker service rm",
            "warm_gets == 0",
            "docker image prune",
        ],
    );
    must(
        "vm-gate",
        &[
            "ccci-verify gate 2pc --target local",
            "--format junit",
            "copy_from_vm",
            "units.legacy-timer-absent",
        ],
    );

    // the scripts are Python for the NixOS test driver: they must compile
    let python = std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("python3"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("python3 not found on PATH: install it (Debian: apt-get install python3) to check the VM test scripts")
        });
    for name in ["vm-prune-policy", "vm-cache", "vm-gate"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(format!("{name}.py"));
        std::fs::write(&file, script(name)).expect("write script");
        let out = run(Command::new(&python)
            .args([
                "-c",
                "import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])",
            ])
            .arg(&file));
        assert!(
            out.status.success(),
            "{name}: not valid Python: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn parity_fails_when_the_gate_spec_checks_other_units() {
    let nix = require_nix!();
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(gate_spec()).expect("read the gate spec");
    let from = "\"ci-docker-prune.timer\"";
    assert!(
        text.contains(from),
        "mutation anchor {from} not in the gate spec"
    );
    let spec = dir.path().join("2pc.toml");
    std::fs::write(&spec, text.replacen(from, "\"prune.timer\"", 1)).expect("write spec");
    let problems = parity_for(&nix, None, &units_dir(), &spec);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("gate spec does not name ci-docker-prune.timer")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("gate spec names prune.timer")),
        "{problems:?}"
    );
}

// ---------------------------------------------------------------------------------------
// tests: the real binary accepts both command lines (and has no --all)

/// The `ci-docker-prune` binary of this workspace, built on demand (a `cargo test -p
/// ccci-tests` run does not build other packages' binaries).
fn prune_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join("ci-docker-prune");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "-q",
        "-p",
        "ci-docker-prune",
        "--bin",
        "ci-docker-prune",
    ])
    .current_dir(repo_root());
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "cannot build ci-docker-prune: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(bin.is_file(), "{} missing after cargo build", bin.display());
    bin
}

/// Run the binary with `args` (argv[1..]) as a dry run against a socket that does not
/// exist: flags are parsed and validated exactly as in the unit, nothing is touched.
fn dry_run(bin: &Path, args: &[String]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("no-docker.sock");
    run(Command::new(bin)
        .args(args)
        .arg("--dry-run")
        .arg("--docker-host")
        .arg(format!("unix://{}", sock.display()))
        .env_remove("DOCKER_HOST"))
}

/// Issue 21: `metricsFile` defaults to node_exporter's textfile directory when the node
/// exporter runs the textfile collector with a directory, else to null (no metrics); set, it
/// renders `--metrics-file` and makes its directory writable under ProtectSystem=strict.
#[test]
fn metrics_file_defaults_to_the_node_exporter_textfile_directory() {
    let nix = require_nix!();
    let node = |enable: bool, collectors: &[&str], flags: &[&str]| {
        json!({
            "services": {
                "ci-docker-prune": {"enable": true},
                "prometheus": {"exporters": {"node": {
                    "enable": enable, "enabledCollectors": collectors, "extraFlags": flags}}}
            }
        })
    };
    let dir_flag = "--collector.textfile.directory=/var/lib/node-exporter-text";
    let cases: [(Value, Option<&str>); 5] = [
        (enabled(), None),
        (
            node(
                true,
                &["systemd", "textfile"],
                &["--web.listen-address=:9100", dir_flag],
            ),
            Some("/var/lib/node-exporter-text/ci-docker-prune.prom"),
        ),
        // the collector off, the exporter off, or no directory: no metrics by default
        (node(true, &["systemd"], &[dir_flag]), None),
        (node(false, &["textfile"], &[dir_flag]), None),
        (node(true, &["textfile"], &[]), None),
    ];
    for (settings, want) in cases {
        let eval = eval_module(&nix, None, &settings).expect("module evaluates");
        assert_eq!(
            eval["options"]["metricsFile"]["default"],
            json!(want),
            "{settings}"
        );
        let sc = &eval["services"]["ci-docker-prune"]["serviceConfig"];
        let argv = systemd_argv(sc["ExecStart"].as_str().expect("ExecStart")).expect("argv");
        let inv = invocation(&argv).expect("argv");
        match want {
            Some(file) => {
                let at = inv.other.iter().position(|a| a == "--metrics-file");
                assert_eq!(
                    at.and_then(|i| inv.other.get(i + 1)).map(String::as_str),
                    Some(file),
                    "{argv:?}"
                );
                assert_eq!(
                    sc["ReadWritePaths"],
                    json!(["-/var/lib/node-exporter-text"]),
                    "{sc}"
                );
            }
            None => {
                assert!(
                    !inv.other.contains(&"--metrics-file".to_string()),
                    "{argv:?}"
                );
                assert!(sc.get("ReadWritePaths").is_none(), "{sc}");
            }
        }
    }
    // set by hand, it wins; a relative path or a directory is refused at evaluation
    let eval = eval_module(
        &nix,
        None,
        &json!({"services": {"ci-docker-prune": {"enable": true, "metricsFile": "/run/m/p.prom"}}}),
    )
    .expect("module evaluates");
    let exec = eval["services"]["ci-docker-prune"]["serviceConfig"]["ExecStart"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        exec.contains(r#""--metrics-file" "/run/m/p.prom""#),
        "{exec}"
    );
    for bad in ["m.prom", "/var/lib/x/"] {
        let e = eval_module(
            &nix,
            None,
            &json!({"services": {"ci-docker-prune": {"enable": true, "metricsFile": bad}}}),
        )
        .expect_err(bad);
        assert!(e.contains("metricsFile"), "{bad}: {e}");
    }
    // the binary takes the module's command line with the metrics file
    let eval =
        eval_module(&nix, None, &node(true, &["textfile"], &[dir_flag])).expect("module evaluates");
    let module = module_side(&eval).expect("module side");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args: Vec<String> = module.argv[1..].to_vec();
    let i = args
        .iter()
        .position(|a| a == "--metrics-file")
        .expect("flag")
        + 1;
    let file = dir.path().join("ci-docker-prune.prom");
    args[i] = file.to_string_lossy().into_owned();
    // a dry run writes no state, the metrics included
    let out = dry_run(&prune_binary(), &args);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!file.exists(), "a dry run wrote the metrics file");
    // a real run, with no daemon to reach (so nothing can be removed): below the threshold it
    // skips, above it fails to reach Docker; either way it writes the metrics
    let sock = dir.path().join("no-docker.sock");
    let out = run(Command::new(prune_binary())
        .args(&args)
        .arg("--docker-host")
        .arg(format!("unix://{}", sock.display()))
        .env_remove("DOCKER_HOST"));
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        file.is_file(),
        "no metrics file after a run of the module's command line"
    );
}

#[test]
fn the_binary_accepts_both_command_lines_and_has_no_all_flag() {
    let nix = require_nix!();
    let eval = eval_module(&nix, None, &enabled()).expect("module evaluates");
    let module = module_side(&eval).expect("module side");
    let portable = portable_side(&units_dir()).expect("portable side");
    let bin = prune_binary();
    for side in [&module, &portable] {
        let out = dry_run(&bin, &side.argv[1..]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // 0: decided (e.g. below threshold), 1: Docker unreachable; 2 would be a usage error
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}: {:?} exited {:?}: {stderr}",
            side.origin,
            &side.argv[1..],
            out.status.code()
        );
    }
    // the failing side: what the parity test forbids, the binary refuses as a usage error
    for forbidden in ["--all", "--volumes"] {
        let mut args = module.argv[1..].to_vec();
        args.push(forbidden.to_string());
        let out = dry_run(&bin, &args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{forbidden} must be a usage error"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(forbidden),
            "the error names {forbidden}"
        );
    }
}

#[test]
fn parity_fails_when_the_hardening_drifts() {
    let nix = require_nix!();
    let dir = tempfile::tempdir().expect("tempdir");
    let m = mutated_module(dir.path(), "PrivateTmp = true;", "PrivateTmp = false;");
    let problems = parity_for(&nix, Some(&m), &units_dir(), &gate_spec());
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("[Service] PrivateTmp:")),
        "{problems:?}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let u = mutated_units(
        dir.path(),
        "ci-docker-prune.service",
        "NoNewPrivileges=yes\n",
        "NoNewPrivileges=yes\nProtectProc=invisible\n",
    );
    let problems = parity_for(&nix, None, &u, &gate_spec());
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("[Service] ProtectProc:")),
        "{problems:?}"
    );
}
