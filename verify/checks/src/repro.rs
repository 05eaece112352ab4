//! `repro.*`: git equals host. The defect behind these checks is the seed's finding F2pc-1:
//! the host ran `ci-docker-prune.*` built from uncommitted source while the committed module
//! declared `docker-prune.*`, so a verifier that followed the docs against a host rebuilt from
//! git got a false result.
//!
//! - `repro.units-git-eq-host`: the units the gate's module files declare at REV (static
//!   analysis with `ccci-nix`) are exactly the host's live units of that family, and the
//!   legacy names are not-found.
//! - `repro.files-git-eq-host`: the module files at REV are byte-identical to the host's
//!   deployed source tree. A NixOS host with no deployed tree (deployed from the store by
//!   deploy-rs or colmena) is judged by what its system was built from instead: git at REV's
//!   toplevel against the running system, as `repro.system-git-eq-host` compares them.
//! - `repro.docs-reference-declared-units`: every unit of the family that a `systemctl`
//!   command in the docs names is declared at REV (or is a legacy name in an absence check).
//!
//! Each check reads git at the gate's REV from the object database (never the work tree) and
//! the host through the target's transport. The decisions are pure functions
//! ([`decide_units`], [`decide_files`], [`decide_docs`]) so their every branch is unit-tested.

pub mod docs;
pub mod program;
pub mod system;
pub mod unit_config;

use crate::{Ctx, DynCheck};
use async_trait::async_trait;
use ccci_core::{short, Check, Decided, Evidence, Halt, Outcome, Trail};
use ccci_host::{sha256_hex, UnitState};
use ccci_nix::{Declared, GitError, GitRepo, NixError, UnitDecl};
use docs::DocRef;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

pub fn checks() -> Vec<DynCheck> {
    vec![
        Arc::new(UnitsGitEqHost),
        Arc::new(FilesGitEqHost),
        Arc::new(DocsReferenceDeclaredUnits),
        Arc::new(UnitConfigGitEqHost),
        Arc::new(SystemGitEqHost),
        Arc::new(ProgramGitEqHost),
    ]
}

struct UnitConfigGitEqHost;
#[async_trait]
impl Check<Ctx> for UnitConfigGitEqHost {
    fn id(&self) -> &'static str {
        "repro.unit-config-git-eq-host"
    }
    fn title(&self) -> &'static str {
        "the live units' effective settings (schedule, Persistent, random delay, triggered unit, every Exec* line, drop-ins included) equal what git declares at REV for the host's flavour"
    }
    fn reads_git(&self) -> bool {
        true
    }
    async fn run(&self, ctx: &Ctx) -> Outcome {
        let mut t = Trail::new();
        let r = unit_config::unit_config_git_eq_host(ctx, &mut t).await;
        t.conclude(r)
    }
}

struct SystemGitEqHost;
#[async_trait]
impl Check<Ctx> for SystemGitEqHost {
    fn id(&self) -> &'static str {
        "repro.system-git-eq-host"
    }
    fn title(&self) -> &'static str {
        "on NixOS: /run/current-system is the toplevel git at REV evaluates to (elsewhere it does not apply)"
    }
    fn reads_git(&self) -> bool {
        true
    }
    async fn run(&self, ctx: &Ctx) -> Outcome {
        let mut t = Trail::new();
        let r = system::system_git_eq_host(ctx, &mut t).await;
        t.conclude(r)
    }
}

struct ProgramGitEqHost;
#[async_trait]
impl Check<Ctx> for ProgramGitEqHost {
    fn id(&self) -> &'static str {
        "repro.program-git-eq-host"
    }
    fn title(&self) -> &'static str {
        "the prune service runs git's product: an ELF whose source fingerprint is git's at REV (on NixOS, in the running system's closure)"
    }
    fn reads_git(&self) -> bool {
        true
    }
    async fn run(&self, ctx: &Ctx) -> Outcome {
        let mut t = Trail::new();
        let r = program::program_git_eq_host(ctx, &mut t).await;
        t.conclude(r)
    }
}

/// Lines of a diff shown in evidence before it is cut.
const MAX_DIFF_LINES: usize = 60;

/// A unit is of the family when its name contains one of the stems, or is a legacy name.
pub fn in_family(name: &str, stems: &[String], legacy: &[String]) -> bool {
    legacy.iter().any(|l| l == name)
        || stems
            .iter()
            .any(|s| !s.is_empty() && name.contains(s.as_str()))
}

/// Legacy names of the gate: `legacy_timer` and `legacy_units`, deduplicated.
pub fn legacy_names(ctx: &Ctx) -> Vec<String> {
    let mut v = vec![ctx.params.legacy_timer.clone()];
    v.extend(ctx.params.legacy_units.iter().cloned());
    v.sort();
    v.dedup();
    v.retain(|s| !s.is_empty());
    v
}

/// The host does not have the unit at all (the state systemd reports for a name it knows
/// nothing of). A unit that is merely listed because another unit references it is absent.
/// Absent for a name that must not run: not found with no unit file, or masked and inactive
/// (systemd can never start it; NixOS renders `enable = false` as a link to `/dev/null`).
fn absent(s: &UnitState) -> bool {
    (s.is_not_found() && !s.has_unit_file()) || s.is_masked_inert()
}

/// A unit systemd still knows in a way a deploy from git does not produce: loaded without a
/// unit file, a linked or masked file, or a file changed on disk since it was loaded.
fn stale_reason(s: &UnitState) -> Option<String> {
    if absent(s) {
        return None;
    }
    if s.is_stale_leftover() {
        return Some(s.summary());
    }
    if s.raw.get("NeedDaemonReload").map(String::as_str) == Some("yes") {
        return Some(format!("{} NeedDaemonReload=yes (its unit file changed or was removed since systemd loaded it)", s.summary()));
    }
    None
}

/// What the platform itself declares, as the host shows it: on NixOS, nixpkgs' docker module
/// defines `docker-prune.service` whenever Docker is enabled (only its timer depends on
/// `autoPrune.enable`), so a right host has that service loaded, linked and inert.
#[derive(Debug, Clone, Default)]
pub struct Platform {
    /// The host is NixOS (`/etc/NIXOS` exists): its platform units may be present.
    pub nixos: bool,
    /// The gate spec's `platform_units`.
    pub units: Vec<String>,
    /// For each platform unit present: the units that trigger, want or require it.
    pub pulled_in_by: BTreeMap<String, Vec<String>>,
}

impl Platform {
    /// `name` is a platform unit and the host is one where the platform declares it.
    fn owns(&self, name: &str) -> bool {
        self.nixos && self.units.iter().any(|u| u == name)
    }
}

/// Decision of `repro.units-git-eq-host`.
///
/// - `declared`: the units the module files declare at REV;
/// - `listed`: the names of the family the host's `list-units`/`list-unit-files` show;
/// - `states`: `systemctl show` of every declared, listed and legacy name;
/// - `legacy`: names that must be not-found, except the platform's own units on the platform
///   (`platform`), which must be present as the platform makes them and inert.
pub fn decide_units(
    declared: &Declared,
    listed: &BTreeSet<String>,
    states: &BTreeMap<String, UnitState>,
    legacy: &[String],
    platform: &Platform,
) -> Outcome {
    let want: BTreeSet<String> = declared.names();
    let mut problems = Vec::new();
    if !declared.unresolved.is_empty() {
        let list: Vec<String> = declared
            .unresolved
            .iter()
            .map(|u| format!("{}:{} {}", u.file, u.line, u.text))
            .collect();
        return Outcome::error(format!(
            "git at {} has unit names the static analysis cannot resolve, so equality cannot be decided: {}",
            short(&declared.rev),
            list.join("; ")
        ));
    }
    if want.is_empty() {
        problems.push(format!(
            "the module files declare no unit at {}: nothing to compare (wrong module_files?)",
            short(&declared.rev)
        ));
    }
    for name in &want {
        match states.get(name) {
            Some(s) if s.is_loaded() => {}
            Some(s) => problems.push(format!(
                "{name} is declared in git but not loaded on the host (LoadState={})",
                s.load_state
            )),
            None => problems.push(format!(
                "{name} is declared in git but the host reported no state for it"
            )),
        }
        if legacy.contains(name) {
            problems.push(format!("git declares the legacy name {name}"));
        }
    }
    let present: BTreeSet<&String> = listed
        .iter()
        .filter(|n| states.get(*n).is_some_and(|s| !absent(s)))
        .collect();
    for name in &present {
        if !want.contains(*name) && !platform.owns(name) {
            let st = states.get(*name).map(|s| s.summary()).unwrap_or_default();
            problems.push(format!(
                "{name} exists on the host but git does not declare it ({st})"
            ));
        }
    }
    for name in &platform.units {
        if !platform.owns(name) || want.contains(name) {
            continue;
        }
        match states.get(name) {
            None => problems.push(format!("no state reported for platform unit {name}")),
            Some(s) if absent(s) => {}
            Some(s) if !s.is_loaded() => problems.push(format!(
                "platform unit {name} is not as the platform makes it: {}",
                s.summary()
            )),
            Some(_) => {
                let by = platform.pulled_in_by.get(name).cloned().unwrap_or_default();
                if !by.is_empty() {
                    problems.push(format!(
                        "platform unit {name} must be inert, but {} pulls it in (triggered, wanted or required by it)",
                        by.join(", ")
                    ));
                }
            }
        }
    }
    for name in legacy {
        if want.contains(name) || platform.owns(name) {
            continue; // reported above
        }
        match states.get(name) {
            Some(s) if absent(s) => {}
            Some(s) => problems.push(format!(
                "legacy {name} is still known to systemd: {}",
                s.summary()
            )),
            None => problems.push(format!("no state reported for legacy {name}")),
        }
    }
    let mut stale: Vec<String> = Vec::new();
    for (name, s) in states {
        if let Some(r) = stale_reason(s) {
            // a platform unit is judged above, by the platform's rule
            if platform.owns(name) && !want.contains(name) && s.is_loaded() {
                continue;
            }
            stale.push(format!("stale leftover {name}: {r}"));
        }
    }
    problems.extend(stale);
    problems.dedup();
    if problems.is_empty() {
        let inert: Vec<&String> = platform
            .units
            .iter()
            .filter(|n| platform.owns(n) && states.get(*n).is_some_and(|s| !absent(s)))
            .collect();
        let absent_legacy: Vec<&String> = legacy.iter().filter(|n| !inert.contains(n)).collect();
        let masked: Vec<&String> = absent_legacy
            .iter()
            .copied()
            .filter(|n| states.get(*n).is_some_and(UnitState::is_masked_inert))
            .collect();
        let not_found: Vec<&String> = absent_legacy
            .iter()
            .copied()
            .filter(|n| !masked.contains(n))
            .collect();
        let legacy_text = match (not_found.is_empty(), masked.is_empty()) {
            (_, true) => format!("{} not-found", join(not_found.into_iter())),
            (true, false) => format!("{} masked (never started)", join(masked.into_iter())),
            (false, false) => format!(
                "{} not-found, {} masked (never started)",
                join(not_found.into_iter()),
                join(masked.into_iter())
            ),
        };
        Outcome::pass(format!(
            "git at {} declares {} and the host has exactly those units of the family; legacy {}{}",
            short(&declared.rev),
            join(want.iter()),
            legacy_text,
            if inert.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} present as the platform declares it (NixOS docker module) and inert",
                    join(inert.into_iter())
                )
            }
        ))
    } else {
        Outcome::fail(problems.join("; "))
    }
}

/// Both sets side by side: one line per name, what git says and what the host says.
pub fn side_by_side(
    declared: &Declared,
    listed: &BTreeSet<String>,
    states: &BTreeMap<String, UnitState>,
    legacy: &[String],
) -> String {
    let by_name: BTreeMap<&str, &UnitDecl> = declared
        .units
        .iter()
        .map(|u| (u.name.as_str(), u))
        .collect();
    let mut names: BTreeSet<&str> = by_name.keys().copied().collect();
    names.extend(listed.iter().map(String::as_str));
    names.extend(legacy.iter().map(String::as_str));
    let width = names.iter().map(|n| n.len()).max().unwrap_or(4).max(4);
    let rows: Vec<(&str, String, String)> = names
        .into_iter()
        .map(|n| {
            let git = match by_name.get(n) {
                Some(u) => format!(
                    "declared {}:{}{}",
                    u.file,
                    u.line,
                    if u.conditional { " (conditional)" } else { "" }
                ),
                None if legacy.iter().any(|l| l == n) => "not declared (legacy)".to_string(),
                None => "not declared".to_string(),
            };
            let host = match states.get(n) {
                Some(s) if absent(s) => "not-found".to_string(),
                Some(s) => format!(
                    "LoadState={} ActiveState={} UnitFileState={}",
                    s.load_state,
                    s.active_state,
                    if s.unit_file_state.is_empty() {
                        "(none)"
                    } else {
                        &s.unit_file_state
                    }
                ),
                None => "(no state)".to_string(),
            };
            (n, git, host)
        })
        .collect();
    let head = format!("git at {}", short(&declared.rev));
    let gw = rows
        .iter()
        .map(|r| r.1.chars().count())
        .max()
        .unwrap_or(0)
        .max(head.len());
    let mut out = format!("{:<width$}  {head:<gw$}  host\n", "unit");
    for (n, git, host) in rows {
        out.push_str(&format!("{n:<width$}  {git:<gw$}  {host}\n"));
    }
    out
}

fn join<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = it.map(String::as_str).collect();
    if v.is_empty() {
        "(none)".to_string()
    } else {
        v.join(", ")
    }
}

/// First words of `systemctl list-units` / `list-unit-files` lines: the unit names.
pub fn parse_listing(text: &str) -> BTreeSet<String> {
    text.lines()
        // a leading status bullet (`●`, `*`) when --plain is not honoured
        .filter_map(|l| l.split_whitespace().find(|w| !matches!(*w, "●" | "*")))
        .map(|w| w.trim_start_matches(['●', '*']).to_string())
        .filter(|w| !w.is_empty() && w.contains('.'))
        .collect()
}

/// Run a blocking git/Nix read off the async runtime; a task that dies ends the check.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Halt> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Halt::error(format!("git read task failed: {e}")))
}

struct UnitsGitEqHost;
#[async_trait]
impl Check<Ctx> for UnitsGitEqHost {
    fn id(&self) -> &'static str {
        "repro.units-git-eq-host"
    }
    fn title(&self) -> &'static str {
        "units declared in git at REV equal the host's live units of that family; legacy names absent"
    }
    fn reads_git(&self) -> bool {
        true
    }
    async fn run(&self, ctx: &Ctx) -> Outcome {
        let mut t = Trail::new();
        let r = units_git_eq_host(ctx, &mut t).await;
        t.conclude(r)
    }
}

async fn units_git_eq_host(ctx: &Ctx, t: &mut Trail) -> Decided {
    let repo = ctx.repo.clone();
    let rev = ctx.rev.clone();
    let files = ctx.params.repro.module_files.clone();
    let declared = match blocking(move || ccci_nix::units_report(&repo, &rev, Some(&files))).await?
    {
        Ok(d) => d,
        Err(NixError::Git(e @ GitError::PathMissing { .. })) => {
            return Err(Halt::fail(format!(
                "a module file of the gate is not in git: {e}"
            )))
        }
        Err(e) => {
            return Err(Halt::error(format!(
                "cannot read the module files at {}: {e}",
                ctx.rev
            )))
        }
    };
    let legacy = legacy_names(ctx);
    t.note(
        format!(
            "ccci-verify units --repo {} --rev {} --json   (module files: {})",
            ctx.repo.display(),
            ctx.rev,
            ctx.params.repro.module_files.join(", ")
        ),
        declared.to_json().unwrap_or_else(|e| e.to_string()),
    );

    // The family on the host: loaded units and installed unit files matching the stems.
    let mut patterns: Vec<String> = ctx
        .params
        .repro
        .families
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| format!("*{s}*"))
        .collect();
    patterns.extend(legacy.iter().cloned());
    let mut listed = BTreeSet::new();
    for base in [
        vec![
            "systemctl",
            "list-units",
            "--all",
            "--plain",
            "--no-legend",
            "--no-pager",
            "--full",
            "--",
        ],
        vec![
            "systemctl",
            "list-unit-files",
            "--no-legend",
            "--no-pager",
            "--full",
            "--",
        ],
    ] {
        let mut argv: Vec<&str> = base;
        argv.extend(patterns.iter().map(String::as_str));
        let o = ctx
            .cmd(t, &argv)
            .await
            .map_err(|_| Halt::error("cannot list the host's units"))?;
        // list-unit-files exits 1, silently, when nothing matches: an empty listing.
        if !(o.ok() || (o.status == 1 && o.stdout.is_empty() && o.stderr.is_empty())) {
            return Err(Halt::error(format!(
                "{} exited {}",
                argv.join(" "),
                o.status
            )));
        }
        listed.extend(
            parse_listing(&o.stdout_str())
                .into_iter()
                .filter(|n| in_family(n, &ctx.params.repro.families, &legacy)),
        );
    }

    let mut names: BTreeSet<String> = declared.names();
    names.extend(listed.iter().cloned());
    names.extend(legacy.iter().cloned());
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (states, cmd, out) = ctx
        .target
        .unit_states(&names)
        .await
        .map_err(|e| Halt::error(format!("cannot read unit states: {e}")))?;
    t.push(Evidence::new(cmd, Some(out.status), out.stdout_str()));
    let states = states
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect::<BTreeMap<_, _>>();
    t.note(
        "git ⟷ host, side by side",
        side_by_side(&declared, &listed, &states, &legacy),
    );
    let platform = platform_facts(ctx, t, &states).await?;
    Ok(decide_units(
        &declared, &listed, &states, &legacy, &platform,
    ))
}

/// Is the target NixOS? Decided from three signals a NixOS system has: `/etc/os-release`
/// saying `ID=nixos`, the `/etc/NIXOS` marker its activation creates, and
/// `/run/current-system` (the running system's toplevel). All three: NixOS; none: not; any
/// other mix is an error naming each signal — one missing marker must never quietly turn the
/// whole-system comparison into "not applicable". Recorded.
pub async fn host_is_nixos(ctx: &Ctx, t: &mut Trail) -> Result<bool, Halt> {
    let os = ctx.cmd(t, &["cat", "/etc/os-release"]).await?;
    let id = if os.ok() {
        os_release_id(&os.stdout_str())
    } else {
        None
    };
    let marker = ctx.cmd(t, &["test", "-e", "/etc/NIXOS"]).await?.ok();
    let current = ctx
        .cmd(t, &["test", "-e", "/run/current-system"])
        .await?
        .ok();
    decide_nixos(id.as_deref(), marker, current).map_err(Halt::error)
}

/// The `ID=` of an os-release file (quotes removed), if it has one.
fn os_release_id(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("ID="))
        .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
        .next_back()
}

/// NixOS from its three signals (see [`host_is_nixos`]).
fn decide_nixos(os_id: Option<&str>, marker: bool, current_system: bool) -> Result<bool, String> {
    let os_nixos = os_id == Some("nixos");
    match (os_nixos, marker, current_system) {
        (true, true, true) => Ok(true),
        (false, false, false) => Ok(false),
        _ => Err(format!(
            "the host's NixOS signals disagree: /etc/os-release {}, /etc/NIXOS {}, /run/current-system {}: \
             cannot tell whether it is NixOS",
            match os_id {
                Some(id) => format!("says ID={id}"),
                None => "has no ID (missing or unreadable)".into(),
            },
            if marker { "present" } else { "absent" },
            if current_system { "present" } else { "absent" },
        )),
    }
}

/// The platform's own units on this host: whether it is NixOS, and what pulls in each
/// platform unit that is present.
async fn platform_facts(
    ctx: &Ctx,
    t: &mut Trail,
    states: &BTreeMap<String, UnitState>,
) -> Result<Platform, Halt> {
    let mut p = Platform {
        nixos: false,
        units: ctx.params.repro.platform_units.clone(),
        pulled_in_by: BTreeMap::new(),
    };
    if p.units.is_empty() {
        return Ok(p);
    }
    p.nixos = host_is_nixos(ctx, t).await?;
    let present: Vec<String> = p
        .units
        .iter()
        .filter(|n| states.get(*n).is_some_and(|s| !absent(s)))
        .cloned()
        .collect();
    if !p.nixos || present.is_empty() {
        return Ok(p);
    }
    let mut argv = vec![
        "systemctl".to_string(),
        "show".into(),
        "-p".into(),
        ccci_host::PULLED_IN_PROPERTIES.join(","),
        "--".into(),
    ];
    argv.extend(present.iter().cloned());
    let out = ctx.cmd_owned(t, &argv).await?;
    if !out.ok() {
        return Err(Halt::error(format!(
            "systemctl show of the platform units exited {}",
            out.status
        )));
    }
    let names: Vec<&str> = present.iter().map(String::as_str).collect();
    let shown = ccci_host::parse_show(&out.stdout_str(), &names)
        .map_err(|e| Halt::error(format!("cannot read the platform units: {e}")))?;
    for s in shown {
        p.pulled_in_by.insert(s.name.clone(), s.pulled_in_by());
    }
    Ok(p)
}

/// A file's bytes at REV, or why git has none.
type GitBytes = Result<Vec<u8>, String>;

/// One module file: its bytes at REV in git and in the host's deployed tree.
#[derive(Debug, Clone)]
pub struct FilePair {
    pub file: String,
    pub host_path: String,
    /// `Err` says why git has no bytes (missing at REV, …).
    pub git: Result<Vec<u8>, String>,
    /// `Ok(None)`: the file does not exist on the host.
    pub host: Result<Option<Vec<u8>>, String>,
}

/// A short unified diff of two texts (git first), cut after [`MAX_DIFF_LINES`] lines.
pub fn short_diff(git_name: &str, host_name: &str, git: &[u8], host: &[u8]) -> String {
    let (Ok(a), Ok(b)) = (std::str::from_utf8(git), std::str::from_utf8(host)) else {
        return "binary content differs".to_string();
    };
    let diff = similar::TextDiff::from_lines(a, b);
    let text = diff
        .unified_diff()
        .context_radius(2)
        .header(git_name, host_name)
        .to_string();
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() > MAX_DIFF_LINES {
        format!(
            "{}\n… ({} more diff lines)",
            lines[..MAX_DIFF_LINES].join("\n"),
            lines.len() - MAX_DIFF_LINES
        )
    } else if text.is_empty() {
        // Same lines, different bytes (line endings, a missing final newline).
        format!(
            "no line differs; sizes {} vs {} bytes (line endings or final newline)",
            git.len(),
            host.len()
        )
    } else {
        text
    }
}

/// Decision of `repro.files-git-eq-host`, with per-file evidence.
pub fn decide_files(rev: &str, pairs: &[FilePair]) -> Outcome {
    let mut evidence = Vec::new();
    let mut problems = Vec::new();
    let mut errors = Vec::new();
    let mut same = Vec::new();
    for p in pairs {
        // what really ran: git's object database read by ccci-verify, the host's file read with
        // `cat` through the target; both hashed by ccci-verify
        let git_cmd = format!(
            "{}:{} read from the object database (sha256 by ccci-verify)",
            short(rev),
            p.file
        );
        let host_cmd = format!(
            "cat -- {}   # on the host (sha256 by ccci-verify)",
            p.host_path
        );
        match (&p.git, &p.host) {
            (Ok(g), Ok(Some(h))) => {
                let (gh, hh) = (sha256_hex(g), sha256_hex(h));
                evidence.push(Evidence::note(
                    git_cmd,
                    format!("{gh}  ({} bytes)", g.len()),
                ));
                evidence.push(Evidence::note(
                    host_cmd,
                    format!("{hh}  ({} bytes)", h.len()),
                ));
                if gh == hh {
                    same.push(p.file.clone());
                } else {
                    problems.push(format!(
                        "{} differs: git {} vs host {}",
                        p.file,
                        &gh[..12],
                        &hh[..12]
                    ));
                    evidence.push(Evidence::note(
                        format!("diff git:{} host:{}", p.file, p.host_path),
                        short_diff(
                            &format!("git:{}@{}", p.file, short(rev)),
                            &format!("host:{}", p.host_path),
                            g,
                            h,
                        ),
                    ));
                }
            }
            (Ok(g), Ok(None)) => {
                evidence.push(Evidence::note(
                    git_cmd,
                    format!("{}  ({} bytes)", sha256_hex(g), g.len()),
                ));
                evidence.push(Evidence::note(
                    host_cmd,
                    "no such file on the host".to_string(),
                ));
                problems.push(format!(
                    "{} is missing from the host's deployed tree",
                    p.host_path
                ));
            }
            (Err(e), host) => {
                evidence.push(Evidence::note(git_cmd, e.clone()));
                if let Ok(Some(h)) = host {
                    evidence.push(Evidence::note(
                        host_cmd,
                        format!("{}  ({} bytes)", sha256_hex(h), h.len()),
                    ));
                }
                problems.push(format!("{} is not in git at {}: {e}", p.file, short(rev)));
            }
            (Ok(_), Err(e)) => {
                evidence.push(Evidence::note(host_cmd, e.clone()));
                errors.push(format!("cannot read {} on the host: {e}", p.host_path));
            }
        }
    }
    let outcome = if pairs.is_empty() {
        Outcome::fail(
            "the gate names no module files to compare (params.repro.module_files is empty)",
        )
    } else if !problems.is_empty() {
        Outcome::fail(problems.join("; "))
    } else if !errors.is_empty() {
        Outcome::error(errors.join("; "))
    } else {
        Outcome::pass(format!(
            "{} byte-identical (sha256) at {} and on the host",
            same.join(", "),
            short(rev)
        ))
    };
    outcome.with_evidence(evidence)
}

struct FilesGitEqHost;
#[async_trait]
impl Check<Ctx> for FilesGitEqHost {
    fn id(&self) -> &'static str {
        "repro.files-git-eq-host"
    }
    fn title(&self) -> &'static str {
        "the module files at REV are byte-identical to the host's deployed source tree"
    }
    fn reads_git(&self) -> bool {
        true
    }
    async fn run(&self, ctx: &Ctx) -> Outcome {
        // decide_files attaches the evidence of every file it compared
        let mut t = Trail::new();
        let r = files_git_eq_host(ctx, &mut t).await;
        t.conclude(r)
    }
}

/// No deployed source tree on the host (a NixOS host deployed from the store by deploy-rs,
/// colmena or `nixos-rebuild --target-host` keeps no checkout): on NixOS, with the gate naming
/// the system toplevel, what the system was built from is compared instead — git at REV
/// evaluated to its toplevel (as `repro.system-git-eq-host` evaluates it) against the running
/// system — and the verdict says so. Otherwise nothing records what was deployed: a FAIL with
/// the reason (a check that compared nothing never passes).
async fn files_without_a_tree(ctx: &Ctx, t: &mut Trail, tree: &str) -> Decided {
    let missing = format!("{tree} is missing from the host (no deployed source tree)");
    if !host_is_nixos(ctx, t).await? {
        return Ok(Outcome::fail(format!(
            "{missing}: off NixOS the checkout is the only record of what was deployed, so the module files at {} cannot be compared",
            short(&ctx.rev)
        )));
    }
    let Some(attr) = ctx.params.repro.system_attr.clone() else {
        return Ok(Outcome::fail(format!(
            "{missing}, and the gate names no system toplevel ([params.repro] system_attr) to compare what the system was built from instead"
        )));
    };
    let how = format!(
        "{missing}: on NixOS what the system was built from is compared instead (git at {} evaluated to {attr}, which the module files at REV are built into as far as the configuration imports them)",
        short(&ctx.rev)
    );
    let with_how = |h: Halt| Halt {
        verdict: h.verdict,
        detail: format!("{how}: {}", h.detail),
    };
    let host_path = system::current_system(ctx, t).await.map_err(with_how)?;
    let o = system::compare_toplevel(ctx, t, &attr, &host_path)
        .await
        .map_err(with_how)?;
    Ok(match o.verdict {
        ccci_core::Verdict::Pass => Outcome::pass(format!("{how}: {}", o.detail)),
        _ => Outcome::fail(format!("{how}: {}", o.detail)),
    })
}

async fn files_git_eq_host(ctx: &Ctx, t: &mut Trail) -> Decided {
    let tree = ctx
        .params
        .repro
        .deployed_tree
        .trim_end_matches('/')
        .to_string();
    let has_tree = ctx.cmd(t, &["test", "-d", &tree]).await?.ok();
    if !has_tree {
        return files_without_a_tree(ctx, t, &tree).await;
    }
    let repo = ctx.repo.clone();
    let rev = ctx.rev.clone();
    let files = ctx.params.repro.module_files.clone();
    let (git, dirty) = blocking(move || -> Result<(Vec<GitBytes>, Vec<String>), GitError> {
        let g = GitRepo::open(&repo)?;
        let sha = g.resolve(&rev)?;
        let bytes = files
            .iter()
            .map(|f| g.read_file_at_commit(&sha, f).map_err(|e| e.to_string()))
            .collect();
        // The work tree is not used; whether it differs from HEAD is worth knowing.
        let dirty = g.dirty().unwrap_or_default();
        Ok((bytes, dirty))
    })
    .await?
    .map_err(|e| Halt::error(format!("cannot read git at {}: {e}", ctx.rev)))?;
    let mut pairs = Vec::new();
    for (file, git) in ctx.params.repro.module_files.iter().zip(git) {
        let host_path = format!("{tree}/{}", file.trim_start_matches("./"));
        let host = ctx
            .target
            .read_file(&host_path)
            .await
            .map_err(|e| e.to_string());
        pairs.push(FilePair {
            file: file.clone(),
            host_path,
            git,
            host,
        });
    }
    let mut outcome = decide_files(&ctx.rev, &pairs);
    if !dirty.is_empty() {
        outcome.push(Evidence::note(
            format!(
                "git -C {} status --porcelain (the work tree; not what this check compares)",
                ctx.repo.display()
            ),
            dirty.join("\n"),
        ));
    }
    Ok(outcome)
}

/// Decision of `repro.docs-reference-declared-units`.
pub fn decide_docs(
    rev: &str,
    refs: &[DocRef],
    declared: &BTreeSet<String>,
    stems: &[String],
    legacy: &[String],
) -> Outcome {
    let mut bad = Vec::new();
    let mut ok = 0usize;
    for r in refs {
        if !in_family(&r.unit, stems, legacy) {
            continue;
        }
        if declared.contains(&r.unit) || (legacy.contains(&r.unit) && r.absence) {
            ok += 1;
        } else if legacy.contains(&r.unit) {
            bad.push(format!(
                "{}:{} `{}` uses legacy {} as if it existed (only an absence check — LoadState/not-found — may name it)",
                r.file, r.line, r.command, r.unit
            ));
        } else {
            bad.push(format!(
                "{}:{} `{}` names {}, which git does not declare at {}",
                r.file,
                r.line,
                r.command,
                r.unit,
                short(rev)
            ));
        }
    }
    if bad.is_empty() && ok == 0 {
        // nothing compared: no doc at REV names the family in a systemctl command
        Outcome::skip(format!(
            "no systemctl reference to the family in the docs at {} ({} reference(s) read, none to the family): nothing to hold to git's units",
            short(rev),
            refs.len()
        ))
    } else if bad.is_empty() {
        Outcome::pass(format!(
            "{ok} systemctl reference(s) to the family, each declared at {} or a legacy name in an absence check",
            short(rev)
        ))
    } else {
        Outcome::fail(bad.join("; "))
    }
}

/// Doc files read at REV as (path, text), and notes on `docs` entries missing at REV.
type DocFiles = (Vec<(String, String)>, Vec<String>);

/// The doc files at REV: each `docs` entry is a file (read whatever its extension) or a
/// directory (its markdown and text files, recursively). Entries missing at REV are returned
/// as notes.
fn doc_files(repo: &std::path::Path, rev: &str, entries: &[String]) -> Result<DocFiles, GitError> {
    let g = GitRepo::open(repo)?;
    let sha = g.resolve(rev)?;
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for e in entries {
        match g.read_file_at_commit(&sha, e) {
            Ok(bytes) => out.push((e.clone(), String::from_utf8_lossy(&bytes).into_owned())),
            Err(GitError::NotAFile { .. }) => {
                for f in g.list_files(&sha, e)? {
                    if docs::is_doc_file(&f) {
                        let bytes = g.read_file_at_commit(&sha, &f)?;
                        out.push((f, String::from_utf8_lossy(&bytes).into_owned()));
                    }
                }
            }
            Err(GitError::PathMissing { .. }) => {
                notes.push(format!("{e}: not in git at {}", short(&sha)))
            }
            Err(other) => return Err(other),
        }
    }
    Ok((out, notes))
}

struct DocsReferenceDeclaredUnits;
#[async_trait]
impl Check<Ctx> for DocsReferenceDeclaredUnits {
    fn id(&self) -> &'static str {
        "repro.docs-reference-declared-units"
    }
    fn title(&self) -> &'static str {
        "every unit named in docs' systemctl commands is declared in git at REV"
    }
    fn reads_git(&self) -> bool {
        true
    }
    async fn run(&self, ctx: &Ctx) -> Outcome {
        let mut t = Trail::new();
        let r = docs_reference_declared_units(ctx, &mut t).await;
        t.conclude(r)
    }
}

async fn docs_reference_declared_units(ctx: &Ctx, t: &mut Trail) -> Decided {
    let repo: PathBuf = ctx.repo.clone();
    let rev = ctx.rev.clone();
    let files = ctx.params.repro.module_files.clone();
    let doc_entries = ctx.params.repro.docs.clone();
    let (declared, (docs, notes)) = blocking(move || -> Result<_, NixError> {
        let declared = ccci_nix::units_report(&repo, &rev, Some(&files))?;
        let docs = doc_files(&repo, &rev, &doc_entries)?;
        Ok((declared, docs))
    })
    .await?
    .map_err(|e| Halt::error(format!("cannot read git at {}: {e}", ctx.rev)))?;
    let legacy = legacy_names(ctx);
    let refs: Vec<DocRef> = docs.iter().flat_map(|(f, t)| docs::scan(f, t)).collect();
    let stems = &ctx.params.repro.families;
    let listing: String = refs
        .iter()
        .filter(|r| in_family(&r.unit, stems, &legacy))
        .map(|r| {
            format!(
                "{}:{}  {}  → {}{}\n",
                r.file,
                r.line,
                r.command,
                r.unit,
                if r.absence { "  (absence check)" } else { "" }
            )
        })
        .collect();
    t.note(
        format!(
            "ccci-verify units --repo {} --rev {} --json   (module files: {})",
            ctx.repo.display(),
            ctx.rev,
            ctx.params.repro.module_files.join(", ")
        ),
        format!("declared: {}", join(declared.names().iter())),
    );
    t.note(
        format!(
            "systemctl commands in {} doc file(s) at {} ({})",
            docs.len(),
            short(&ctx.rev),
            ctx.params.repro.docs.join(", ")
        ),
        if listing.is_empty() {
            "no systemctl command names a unit of the family".to_string()
        } else {
            listing
        },
    );
    if !notes.is_empty() {
        t.note("doc entries not found", notes.join("\n"));
    }
    if !declared.unresolved.is_empty() {
        return Err(Halt::error(format!(
            "git at {} has unit names the static analysis cannot resolve",
            short(&ctx.rev)
        )));
    }
    Ok(decide_docs(
        &ctx.rev,
        &refs,
        &declared.names(),
        stems,
        &legacy,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccci_core::Verdict;
    use ccci_nix::Unresolved;

    #[test]
    fn os_release_id_is_read_as_systemd_does() {
        // NixOS 25.11's /etc/os-release (abridged), Debian 12's, a quoted value, none
        let nixos = "ANSI_COLOR=\"0;38;2;126;186;228\"\nBUILD_ID=\"25.11.20251201.abcdef0\"\nID=nixos\nID_LIKE=\"\"\nNAME=NixOS\n";
        assert_eq!(os_release_id(nixos).as_deref(), Some("nixos"));
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
        assert_eq!(os_release_id(debian).as_deref(), Some("debian"));
        assert_eq!(os_release_id("ID=\"nixos\"\n").as_deref(), Some("nixos"));
        assert_eq!(os_release_id("NAME=x\nVERSION_ID=1\n"), None);
    }

    #[test]
    fn nixos_needs_all_three_signals_and_a_mix_is_an_error() {
        // hand-derived: every combination of the three signals
        for os in [Some("nixos"), Some("debian"), None] {
            for marker in [false, true] {
                for current in [false, true] {
                    let got = decide_nixos(os, marker, current);
                    let all = os == Some("nixos") && marker && current;
                    let none = os != Some("nixos") && !marker && !current;
                    match got {
                        Ok(true) => assert!(all, "{os:?} {marker} {current}"),
                        Ok(false) => assert!(none, "{os:?} {marker} {current}"),
                        Err(e) => {
                            assert!(!all && !none, "{os:?} {marker} {current}: {e}");
                            assert!(
                                e.contains("/etc/NIXOS") && e.contains("/run/current-system"),
                                "{e}"
                            );
                        }
                    }
                }
            }
        }
        // the case the issue names: a NixOS host whose /etc/NIXOS is gone is an error, not
        // "not NixOS"
        assert!(decide_nixos(Some("nixos"), false, true).is_err());
    }

    fn state(name: &str, load: &str, active: &str, file_state: &str, fragment: &str) -> UnitState {
        UnitState {
            name: name.into(),
            id: name.into(),
            load_state: load.into(),
            active_state: active.into(),
            sub_state: String::new(),
            unit_file_state: file_state.into(),
            fragment_path: fragment.into(),
            result: "success".into(),
            next_elapse: String::new(),
            exec_start: vec![],
            raw: BTreeMap::new(),
        }
    }

    fn loaded(name: &str) -> UnitState {
        state(
            name,
            "loaded",
            "active",
            "enabled",
            &format!("/etc/systemd/system/{name}"),
        )
    }

    fn not_found(name: &str) -> UnitState {
        state(name, "not-found", "inactive", "", "")
    }

    fn declared(names: &[&str]) -> Declared {
        Declared {
            rev: "0123456789abcdef0123456789abcdef01234567".into(),
            units: names
                .iter()
                .enumerate()
                .map(|(i, n)| UnitDecl {
                    name: n.to_string(),
                    file: "nix/modules/docker-prune.nix".into(),
                    line: 10 + i as u32,
                    conditional: true,
                    overrides: false,
                })
                .collect(),
            unresolved: vec![],
            masked: vec![],
            user_units: vec![],
            initrd_units: vec![],
        }
    }

    fn states(v: Vec<UnitState>) -> BTreeMap<String, UnitState> {
        v.into_iter().map(|s| (s.name.clone(), s)).collect()
    }

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn legacy() -> Vec<String> {
        vec!["docker-prune.service".into(), "docker-prune.timer".into()]
    }

    #[test]
    fn units_pass_when_git_equals_host() {
        let d = declared(&["ci-docker-prune.service", "ci-docker-prune.timer"]);
        let listed = set(&[
            "ci-docker-prune.service",
            "ci-docker-prune.timer",
            "docker-prune.timer",
        ]);
        let st = states(vec![
            loaded("ci-docker-prune.service"),
            loaded("ci-docker-prune.timer"),
            not_found("docker-prune.service"),
            not_found("docker-prune.timer"),
        ]);
        let o = decide_units(&d, &listed, &st, &legacy(), &Platform::default());
        assert_eq!(o.verdict, Verdict::Pass, "{}", o.detail);
    }

    #[test]
    fn units_fail_f2pc1_and_name_both_sides() {
        // git (bad rev) declares docker-prune.*, the host runs ci-docker-prune.*
        let d = declared(&["docker-prune.service", "docker-prune.timer"]);
        let listed = set(&["ci-docker-prune.service", "ci-docker-prune.timer"]);
        let st = states(vec![
            loaded("ci-docker-prune.service"),
            loaded("ci-docker-prune.timer"),
            not_found("docker-prune.service"),
            not_found("docker-prune.timer"),
        ]);
        let o = decide_units(&d, &listed, &st, &legacy(), &Platform::default());
        assert_eq!(o.verdict, Verdict::Fail);
        for needle in [
            "docker-prune.timer is declared in git but not loaded",
            "ci-docker-prune.timer exists on the host but git does not declare it",
            "git declares the legacy name docker-prune.service",
        ] {
            assert!(o.detail.contains(needle), "{needle} not in {}", o.detail);
        }
        let table = side_by_side(&d, &listed, &st, &legacy());
        assert!(
            table.contains("ci-docker-prune.timer") && table.contains("not declared"),
            "{table}"
        );
        assert!(
            table.contains("docker-prune.timer") && table.contains("not-found"),
            "{table}"
        );
    }

    #[test]
    fn a_masked_inactive_legacy_unit_is_absent_a_masked_running_one_is_not() {
        let d = declared(&["ci-docker-prune.service", "ci-docker-prune.timer"]);
        let listed = set(&[
            "ci-docker-prune.service",
            "ci-docker-prune.timer",
            "docker-prune.service",
            "docker-prune.timer",
        ]);
        let masked = |name: &str, active: &str| {
            state(
                name,
                "masked",
                active,
                "masked",
                &format!("/etc/systemd/system/{name}"),
            )
        };
        let st = states(vec![
            loaded("ci-docker-prune.service"),
            loaded("ci-docker-prune.timer"),
            masked("docker-prune.service", "inactive"),
            not_found("docker-prune.timer"),
        ]);
        let o = decide_units(&d, &listed, &st, &legacy(), &Platform::default());
        assert_eq!(o.verdict, Verdict::Pass, "{}", o.detail);
        assert!(
            o.detail
                .contains("docker-prune.timer not-found, docker-prune.service masked"),
            "{}",
            o.detail
        );
        // masked while it runs: systemd still runs it until it stops
        let st = states(vec![
            loaded("ci-docker-prune.service"),
            loaded("ci-docker-prune.timer"),
            not_found("docker-prune.service"),
            masked("docker-prune.timer", "active"),
        ]);
        let o = decide_units(&d, &listed, &st, &legacy(), &Platform::default());
        assert_eq!(o.verdict, Verdict::Fail, "{}", o.detail);
        assert!(
            o.detail
                .contains("legacy docker-prune.timer is still known"),
            "{}",
            o.detail
        );
    }

    #[test]
    fn units_fail_on_legacy_present_stale_and_unloaded() {
        let d = declared(&["ci-docker-prune.service", "ci-docker-prune.timer"]);
        let listed = set(&[
            "ci-docker-prune.service",
            "ci-docker-prune.timer",
            "docker-prune.timer",
        ]);
        // legacy timer still installed and enabled
        let st = states(vec![
            loaded("ci-docker-prune.service"),
            loaded("ci-docker-prune.timer"),
            not_found("docker-prune.service"),
            loaded("docker-prune.timer"),
        ]);
        let o = decide_units(&d, &listed, &st, &legacy(), &Platform::default());
        assert_eq!(o.verdict, Verdict::Fail);
        assert!(
            o.detail
                .contains("legacy docker-prune.timer is still known"),
            "{}",
            o.detail
        );

        // a stale leftover: loaded without a unit file
        let st = states(vec![
            loaded("ci-docker-prune.service"),
            state("ci-docker-prune.timer", "loaded", "active", "", ""),
            not_found("docker-prune.service"),
            not_found("docker-prune.timer"),
        ]);
        let o = decide_units(&d, &listed, &st, &legacy(), &Platform::default());
        assert_eq!(o.verdict, Verdict::Fail);
        assert!(
            o.detail.contains("stale leftover ci-docker-prune.timer"),
            "{}",
            o.detail
        );

        // a linked unit file is how NixOS installs units: not stale
        let st = states(vec![
            state(
                "ci-docker-prune.service",
                "loaded",
                "inactive",
                "linked",
                "/etc/systemd/system/ci-docker-prune.service",
            ),
            loaded("ci-docker-prune.timer"),
            not_found("docker-prune.service"),
            not_found("docker-prune.timer"),
        ]);
        let o = decide_units(&d, &listed, &st, &legacy(), &Platform::default());
        assert_eq!(o.verdict, Verdict::Pass, "{}", o.detail);
        // a masked one is
        let st = states(vec![
            loaded("ci-docker-prune.service"),
            state(
                "ci-docker-prune.timer",
                "loaded",
                "active",
                "masked",
                "/etc/systemd/system/ci-docker-prune.timer",
            ),
            not_found("docker-prune.service"),
            not_found("docker-prune.timer"),
        ]);
        assert!(
            decide_units(&d, &listed, &st, &legacy(), &Platform::default())
                .detail
                .contains("stale leftover")
        );

        // declared but not loaded
        let st = states(vec![
            loaded("ci-docker-prune.service"),
            not_found("ci-docker-prune.timer"),
            not_found("docker-prune.service"),
            not_found("docker-prune.timer"),
        ]);
        let o = decide_units(&d, &listed, &st, &legacy(), &Platform::default());
        assert!(
            o.detail
                .contains("ci-docker-prune.timer is declared in git but not loaded"),
            "{}",
            o.detail
        );

        // file changed on disk since loaded
        let mut reload = loaded("ci-docker-prune.timer");
        reload.raw.insert("NeedDaemonReload".into(), "yes".into());
        let st = states(vec![
            loaded("ci-docker-prune.service"),
            reload,
            not_found("docker-prune.service"),
            not_found("docker-prune.timer"),
        ]);
        assert!(
            decide_units(&d, &listed, &st, &legacy(), &Platform::default())
                .detail
                .contains("NeedDaemonReload=yes")
        );
    }

    fn nixos(pulled: &[(&str, &[&str])]) -> Platform {
        Platform {
            nixos: true,
            units: vec!["docker-prune.service".into()],
            pulled_in_by: pulled
                .iter()
                .map(|(n, by)| (n.to_string(), by.iter().map(|s| s.to_string()).collect()))
                .collect(),
        }
    }

    #[test]
    fn units_on_nixos_the_docker_modules_service_present_and_inert_passes() {
        let d = declared(&["ci-docker-prune.service", "ci-docker-prune.timer"]);
        let listed = set(&[
            "ci-docker-prune.service",
            "ci-docker-prune.timer",
            "docker-prune.service",
        ]);
        let linked = |n: &str| {
            state(
                n,
                "loaded",
                "inactive",
                "linked",
                &format!("/etc/systemd/system/{n}"),
            )
        };
        let st = states(vec![
            linked("ci-docker-prune.service"),
            loaded("ci-docker-prune.timer"),
            linked("docker-prune.service"),
            not_found("docker-prune.timer"),
        ]);
        let o = decide_units(
            &d,
            &listed,
            &st,
            &legacy(),
            &nixos(&[("docker-prune.service", &[])]),
        );
        assert_eq!(o.verdict, Verdict::Pass, "{}", o.detail);
        assert!(
            o.detail
                .contains("docker-prune.service present as the platform declares it"),
            "{}",
            o.detail
        );

        // the same host state off NixOS: the service is a leftover
        let o = decide_units(
            &d,
            &listed,
            &st,
            &legacy(),
            &Platform {
                nixos: false,
                ..nixos(&[])
            },
        );
        assert_eq!(o.verdict, Verdict::Fail);
        assert!(
            o.detail
                .contains("legacy docker-prune.service is still known"),
            "{}",
            o.detail
        );

        // autoPrune's timer beside it: the timer is legacy, and it triggers the service
        let mut listed2 = listed.clone();
        listed2.insert("docker-prune.timer".into());
        let st2 = states(vec![
            linked("ci-docker-prune.service"),
            loaded("ci-docker-prune.timer"),
            linked("docker-prune.service"),
            loaded("docker-prune.timer"),
        ]);
        let o = decide_units(
            &d,
            &listed2,
            &st2,
            &legacy(),
            &nixos(&[("docker-prune.service", &["docker-prune.timer"])]),
        );
        assert_eq!(o.verdict, Verdict::Fail);
        for needle in [
            "legacy docker-prune.timer is still known",
            "platform unit docker-prune.service must be inert, but docker-prune.timer pulls it in",
        ] {
            assert!(o.detail.contains(needle), "{needle} not in {}", o.detail);
        }
        // wanted by a target
        let o = decide_units(
            &d,
            &listed,
            &st,
            &legacy(),
            &nixos(&[("docker-prune.service", &["multi-user.target"])]),
        );
        assert_eq!(o.verdict, Verdict::Fail);
        assert!(
            o.detail.contains("multi-user.target pulls it in"),
            "{}",
            o.detail
        );
    }

    #[test]
    fn units_error_on_unresolved_and_fail_on_nothing_declared() {
        let mut d = declared(&["ci-docker-prune.service"]);
        d.unresolved.push(Unresolved {
            file: "m.nix".into(),
            line: 3,
            text: "systemd.services.${cfg.name}".into(),
            reason: ccci_nix::Reason::ComputedName,
        });
        let st = states(vec![loaded("ci-docker-prune.service")]);
        let o = decide_units(&d, &BTreeSet::new(), &st, &[], &Platform::default());
        assert_eq!(o.verdict, Verdict::Error);
        assert!(o.detail.contains("${cfg.name}"));
        let o = decide_units(
            &declared(&[]),
            &BTreeSet::new(),
            &BTreeMap::new(),
            &[],
            &Platform::default(),
        );
        assert_eq!(o.verdict, Verdict::Fail);
    }

    #[test]
    fn listing_parse() {
        let text = "ci-docker-prune.timer loaded active waiting Gated prune\n\
                    ● docker-prune.service not-found inactive dead docker-prune.service\n\
                    \n";
        assert_eq!(
            parse_listing(text),
            set(&["ci-docker-prune.timer", "docker-prune.service"])
        );
        assert!(in_family(
            "ci-docker-prune.timer",
            &["docker-prune".into()],
            &[]
        ));
        assert!(!in_family("docker.service", &["docker-prune".into()], &[]));
    }

    fn pair(git: &[u8], host: Option<&[u8]>) -> FilePair {
        FilePair {
            file: "nix/modules/docker-prune.nix".into(),
            host_path: "/root/cc-ci/nix/modules/docker-prune.nix".into(),
            git: Ok(git.to_vec()),
            host: Ok(host.map(|h| h.to_vec())),
        }
    }

    #[test]
    fn files_pass_fail_and_diff() {
        let rev = "0123456789abcdef";
        let o = decide_files(rev, &[pair(b"a\nb\n", Some(b"a\nb\n"))]);
        assert_eq!(o.verdict, Verdict::Pass, "{}", o.detail);
        // the evidence names what ran (the host's file read with cat, hashed by the verifier),
        // not a `sha256sum` the host never ran
        assert!(
            o.evidence.iter().all(|e| !e.command.contains("sha256sum"))
                && o.evidence.iter().any(|e| e.command.starts_with("cat -- ")),
            "{:?}",
            o.evidence
        );
        let same = sha256_hex(b"a\nb\n");
        assert_eq!(
            o.evidence
                .iter()
                .filter(|e| e.output.starts_with(&same))
                .count(),
            2
        );

        let o = decide_files(rev, &[pair(b"a\nb\n", Some(b"a\nc\n"))]);
        assert_eq!(o.verdict, Verdict::Fail);
        let diff = o
            .evidence
            .iter()
            .find(|e| e.command.starts_with("diff"))
            .map(|e| e.output.clone());
        let diff = diff.unwrap_or_default();
        assert!(diff.contains("-b") && diff.contains("+c"), "{diff}");

        // one byte: a missing final newline
        let o = decide_files(rev, &[pair(b"a\n", Some(b"a"))]);
        assert_eq!(o.verdict, Verdict::Fail);

        let o = decide_files(rev, &[pair(b"a\n", None)]);
        assert_eq!(o.verdict, Verdict::Fail);
        assert!(o.detail.contains("missing from the host"));

        let mut p = pair(b"", Some(b"x"));
        p.git = Err("\"nix/x.nix\" does not exist at 0123".into());
        assert_eq!(decide_files(rev, &[p]).verdict, Verdict::Fail);

        let mut p = pair(b"x", None);
        p.host = Err("ssh: connection reset".into());
        assert_eq!(decide_files(rev, &[p]).verdict, Verdict::Error);

        assert_eq!(decide_files(rev, &[]).verdict, Verdict::Fail);
    }

    #[test]
    fn docs_decision() {
        let stems = vec!["docker-prune".to_string()];
        let decl = set(&["ci-docker-prune.service", "ci-docker-prune.timer"]);
        let ok = docs::scan(
            "docs/runbook.md",
            "```\nsystemctl is-active ci-docker-prune.timer\nsystemctl show -p LoadState docker-prune.timer\nsystemctl status docker\n```\n",
        );
        let o = decide_docs("abc", &ok, &decl, &stems, &legacy());
        assert_eq!(o.verdict, Verdict::Pass, "{}", o.detail);

        let presence = docs::scan(
            "STATUS.md",
            "Run `systemctl is-active docker-prune.timer`.\n",
        );
        let o = decide_docs("abc", &presence, &decl, &stems, &legacy());
        assert_eq!(o.verdict, Verdict::Fail);
        assert!(
            o.detail.contains("STATUS.md:1") && o.detail.contains("legacy docker-prune.timer"),
            "{}",
            o.detail
        );

        let undeclared = docs::scan(
            "README.md",
            "`systemctl start ci-docker-prune-extra.service`\n",
        );
        let o = decide_docs("abc", &undeclared, &decl, &stems, &legacy());
        assert_eq!(o.verdict, Verdict::Fail);
        assert!(
            o.detail.contains("which git does not declare"),
            "{}",
            o.detail
        );

        // no doc found, or none naming the family: nothing compared, a skip with the reason
        let o = decide_docs("abc", &[], &decl, &stems, &legacy());
        assert_eq!(o.verdict, Verdict::Skip, "{}", o.detail);
        let other = docs::scan("docs/x.md", "`systemctl status docker`\n");
        let o = decide_docs("abc", &other, &decl, &stems, &legacy());
        assert_eq!(o.verdict, Verdict::Skip, "{}", o.detail);
        assert!(o.detail.contains("1 reference(s) read"), "{}", o.detail);
    }
}
