//! Unit state as systemd reports it in `systemctl show`, decided from properties, never from
//! exit codes: `systemctl show` exits 0 for a unit that does not exist, and `is-enabled` exits
//! 0 for static and indirect units.

use crate::HostError;
use serde::Serialize;
use std::collections::BTreeMap;

/// The properties the model asks for.
pub const SHOW_PROPERTIES: &[&str] = &[
    "Id",
    "Names",
    "LoadState",
    "ActiveState",
    "SubState",
    "UnitFileState",
    "FragmentPath",
    "DropInPaths",
    "Result",
    "NextElapseUSecRealtime",
    "LastTriggerUSec",
    "Triggers",
    "ExecStart",
    "ExecMainStatus",
    "ExecMainCode",
    "NeedDaemonReload",
];

/// What a `systemctl show` asks for to learn what pulls a unit in ([`UnitState::pulled_in_by`]).
pub const PULLED_IN_PROPERTIES: &[&str] = &[
    "Id",
    "LoadState",
    "ActiveState",
    "UnitFileState",
    "FragmentPath",
    "TriggeredBy",
    "WantedBy",
    "RequiredBy",
    // what else starts it: another unit's OnSuccess=/OnFailure= (systemd >= 249), Upholds=,
    // BindsTo=, Requisite=, a slice or PartOf= (properties an older systemd does not know
    // are left out of its answer)
    "OnSuccessOf",
    "OnFailureOf",
    "UpheldBy",
    "BoundBy",
    "RequisiteOf",
];

/// One unit's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitState {
    /// The name asked for.
    pub name: String,
    pub id: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    pub unit_file_state: String,
    pub fragment_path: String,
    pub result: String,
    pub next_elapse: String,
    /// Each `ExecStart=` command's argv, as systemd shows it.
    pub exec_start: Vec<Vec<String>>,
    /// Every property as printed.
    pub raw: BTreeMap<String, String>,
}

fn set(v: &str) -> Option<&str> {
    let v = v.trim();
    (!v.is_empty() && v != "n/a" && v != "0").then_some(v)
}

impl UnitState {
    /// systemd knows nothing of this unit: no unit file anywhere, not loaded.
    pub fn is_not_found(&self) -> bool {
        self.load_state == "not-found" && self.fragment_path.is_empty()
    }
    /// A unit file exists on disk for it (even if masked or broken).
    pub fn has_unit_file(&self) -> bool {
        !self.fragment_path.is_empty() || !self.unit_file_state.is_empty()
    }
    pub fn is_loaded(&self) -> bool {
        self.load_state == "loaded"
    }
    pub fn is_active(&self) -> bool {
        self.active_state == "active"
    }
    /// Enabled by a symlink in a `.wants`/`.requires` directory under `/etc` (or NixOS's
    /// `/etc/static`): `enabled`. `enabled-runtime` lives under `/run` and is gone after a
    /// reboot; `static`, `indirect`, `linked`, `alias`, `generated` are not enabled either.
    pub fn is_enabled(&self) -> bool {
        self.unit_file_state == "enabled"
    }
    /// The next time a timer elapses, if systemd has one.
    pub fn next_elapse(&self) -> Option<&str> {
        set(&self.next_elapse)
    }
    /// The units a timer (or path) unit triggers, from `Triggers=`.
    pub fn triggers(&self) -> Vec<String> {
        self.raw
            .get("Triggers")
            .map(|t| t.split_whitespace().map(String::from).collect())
            .unwrap_or_default()
    }
    /// The last run failed (Result other than success, or the unit is in `failed`).
    pub fn last_run_failed(&self) -> bool {
        self.active_state == "failed" || (!self.result.is_empty() && self.result != "success")
    }
    /// Masked (its unit file a link to `/dev/null`, as `systemctl mask` or NixOS's
    /// `systemd.services.X.enable = false` make it) and not running: systemd can never start
    /// it, so for a name that must be absent it is as good as absent — stricter, even. A masked
    /// unit still running (masked while active) is not.
    ///
    /// Only a persistent mask (`UnitFileState=masked`, a link under `/etc`): a runtime mask
    /// (`masked-runtime`, under the `/run` tmpfs) is gone at the next boot, and the unit it
    /// hides (still installed, maybe enabled) runs again.
    pub fn is_masked_inert(&self) -> bool {
        self.load_state == "masked"
            && self.unit_file_state == "masked"
            && !matches!(
                self.active_state.as_str(),
                "active" | "activating" | "reloading" | "deactivating" | "refreshing"
            )
    }
    /// A unit that systemd still knows but whose file is gone, masked or broken: loaded/active
    /// without a fragment, or a `masked`/`bad` file. A `linked` file is not stale: NixOS
    /// installs every unit as a link into the store (`/etc/systemd/system/X ->
    /// /etc/static/systemd/system/X -> /nix/store/…`), and one no target wants reports
    /// `linked`.
    pub fn is_stale_leftover(&self) -> bool {
        (self.load_state != "not-found" && self.fragment_path.is_empty())
            || matches!(
                self.unit_file_state.as_str(),
                "masked" | "masked-runtime" | "bad"
            )
            || self.load_state == "masked"
    }
    /// Units that trigger this one (`TriggeredBy=`: timers, paths, sockets), targets or units
    /// that want or require it (`WantedBy=`, `RequiredBy=`), and units that start it another
    /// way (`OnSuccessOf=`, `OnFailureOf=`, `UpheldBy=`, `BoundBy=`, `RequisiteOf=`), from a `systemctl show`
    /// that asked for those properties ([`PULLED_IN_PROPERTIES`]).
    pub fn pulled_in_by(&self) -> Vec<String> {
        [
            "TriggeredBy",
            "WantedBy",
            "RequiredBy",
            "OnSuccessOf",
            "OnFailureOf",
            "UpheldBy",
            "BoundBy",
            "RequisiteOf",
        ]
        .iter()
        .filter_map(|k| self.raw.get(*k))
        .flat_map(|v| v.split_whitespace().map(String::from))
        .collect()
    }
    /// A compact `key=value` summary for evidence.
    pub fn summary(&self) -> String {
        format!(
            "{}: LoadState={} ActiveState={} SubState={} UnitFileState={} Result={} FragmentPath={}{}",
            self.name,
            self.load_state,
            self.active_state,
            self.sub_state,
            if self.unit_file_state.is_empty() { "(none)" } else { &self.unit_file_state },
            if self.result.is_empty() { "(none)" } else { &self.result },
            if self.fragment_path.is_empty() { "(none)" } else { &self.fragment_path },
            self.next_elapse()
                .map(|n| format!(" NextElapse={n}"))
                .unwrap_or_default()
        )
    }
}

/// Parse `argv[]=…` out of an `ExecStart=` value like
/// `{ path=/bin/x ; argv[]=/bin/x --a b ; ignore_errors=no ; … }`. systemd prints argv joined
/// by spaces, unquoted, so the argv ends at systemd's own next field (`; ignore_errors=`, or
/// `; flags=` for the `Ex` properties), not at the first ` ; ` (a shell script's own `;` may be
/// in it).
pub fn parse_exec(value: &str) -> Option<Vec<String>> {
    let start = value.find("argv[]=")? + "argv[]=".len();
    let rest = &value[start..];
    let end = [" ; ignore_errors=", " ; flags="]
        .iter()
        .filter_map(|m| rest.find(m))
        .min()
        .or_else(|| rest.rfind(" }"))
        .unwrap_or(rest.len());
    let argv: Vec<String> = rest[..end].split_whitespace().map(String::from).collect();
    (!argv.is_empty()).then_some(argv)
}

/// The command properties of a service: every command systemd may run for it.
pub const EXEC_PROPERTIES: &[&str] = &[
    "ExecCondition",
    "ExecStartPre",
    "ExecStart",
    "ExecStartPost",
    "ExecReload",
    "ExecStop",
    "ExecStopPost",
];

/// One command of a unit: the property it is under and its argv as systemd shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecLine {
    pub property: String,
    pub argv: Vec<String>,
}

/// The commands in `systemctl show -p EXEC_PROPERTIES -- UNIT` output, in the order shown (one
/// line per command; a property set twice shows twice).
pub fn parse_exec_lines(text: &str) -> Vec<ExecLine> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| EXEC_PROPERTIES.contains(k))
        .filter_map(|(k, v)| {
            parse_exec(v).map(|argv| ExecLine {
                property: k.to_string(),
                argv,
            })
        })
        .collect()
}

/// Parse the output of `systemctl show -p … -- UNITS…`: one block of `Key=value` lines per
/// unit, blocks separated by a blank line, in the order asked.
pub fn parse_show(text: &str, requested: &[&str]) -> Result<Vec<UnitState>, HostError> {
    let mut blocks: Vec<BTreeMap<String, String>> = Vec::new();
    let mut execs: Vec<Vec<Vec<String>>> = Vec::new();
    let mut cur: BTreeMap<String, String> = BTreeMap::new();
    let mut cur_exec: Vec<Vec<String>> = Vec::new();
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                blocks.push(std::mem::take(&mut cur));
                execs.push(std::mem::take(&mut cur_exec));
            }
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(HostError::Parse(format!("line without `=`: {line:?}")));
        };
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(HostError::Parse(format!("not a property line: {line:?}")));
        }
        if k == "ExecStart" {
            if let Some(argv) = parse_exec(v) {
                cur_exec.push(argv);
            }
        }
        cur.entry(k.to_string())
            .and_modify(|old| {
                old.push('\n');
                old.push_str(v)
            })
            .or_insert_with(|| v.to_string());
    }
    if blocks.len() != requested.len() {
        return Err(HostError::Parse(format!(
            "asked for {} unit(s), got {} block(s) of properties",
            requested.len(),
            blocks.len()
        )));
    }
    let mut out = Vec::new();
    for ((name, raw), exec_start) in requested.iter().zip(blocks).zip(execs) {
        let g = |k: &str| raw.get(k).cloned().unwrap_or_default();
        if !raw.contains_key("LoadState") {
            return Err(HostError::Parse(format!("no LoadState for {name}")));
        }
        out.push(UnitState {
            name: name.to_string(),
            id: g("Id"),
            load_state: g("LoadState"),
            active_state: g("ActiveState"),
            sub_state: g("SubState"),
            unit_file_state: g("UnitFileState"),
            fragment_path: g("FragmentPath"),
            result: g("Result"),
            next_elapse: g("NextElapseUSecRealtime"),
            exec_start,
            raw,
        });
    }
    Ok(out)
}
