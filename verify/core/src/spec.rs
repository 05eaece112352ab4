//! Gate specs: which checks a gate runs, in which groups, with which parameters, and the
//! per-target overrides. A spec is TOML; `verify/gates/*.toml` are built into the binary and a
//! path can be given instead.
//!
//! ```toml
//! version = 1
//! gate = "2pc"
//! title = "..."
//! [params]                        # free table, read by the check catalog
//! threshold = 80
//! [[checks]]
//! id = "units.legacy-timer-absent"
//! blocking = true                 # default true
//! timeout_secs = 60               # default 60
//! retry_until_secs = 0            # retry a failing check until this deadline (converging state)
//! group = "units"                 # one group runs in order; groups run concurrently
//! [targets.sandbox.params]        # merged over [params] for a target of that kind
//! expected_user = "ccci-sandbox"
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SpecError {
    #[error("cannot read gate spec {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid gate spec {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("unknown gate `{0}` (built in: {1}); pass a path to a .toml spec instead")]
    UnknownGate(String, String),
}

fn default_true() -> bool {
    true
}
fn default_timeout() -> u64 {
    60
}

/// One check entry of a gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    pub id: String,
    #[serde(default = "default_true")]
    pub blocking: bool,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    #[serde(default)]
    pub retry_until_secs: u64,
    /// Checks sharing a group run one after another in spec order; groups run concurrently.
    /// Without a group a check is its own group.
    #[serde(default)]
    pub group: Option<String>,
}

impl CheckSpec {
    pub fn group_key(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.id)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetOverride {
    #[serde(default)]
    pub params: toml::Table,
}

/// A parsed gate spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    pub version: u32,
    pub gate: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub params: toml::Table,
    pub checks: Vec<CheckSpec>,
    #[serde(default)]
    pub targets: BTreeMap<String, TargetOverride>,
}

impl GateSpec {
    /// Parse a spec from TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<GateSpec, SpecError> {
        let spec: GateSpec = toml::from_str(text).map_err(|e| SpecError::Invalid {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        spec.validate(origin)?;
        Ok(spec)
    }

    /// Read and parse a spec file.
    pub fn load(path: &Path) -> Result<GateSpec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    fn validate(&self, origin: &str) -> Result<(), SpecError> {
        let invalid = |message: String| SpecError::Invalid {
            path: origin.to_string(),
            message,
        };
        if self.version != 1 {
            return Err(invalid(format!(
                "version {} is not supported (this build reads version 1)",
                self.version
            )));
        }
        if self.gate.trim().is_empty() {
            return Err(invalid("`gate` must name the gate".into()));
        }
        if self.checks.is_empty() {
            return Err(invalid("a gate needs at least one [[checks]] entry".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.checks {
            if !seen.insert(c.id.as_str()) {
                return Err(invalid(format!("check `{}` is listed twice", c.id)));
            }
            if c.timeout_secs == 0 {
                return Err(invalid(format!(
                    "check `{}`: timeout_secs must be > 0",
                    c.id
                )));
            }
        }
        Ok(())
    }

    /// The parameters for a target: `[params]`, then `[targets.<kind>.params]`, then
    /// `[targets."<full target>".params]`, each merged over the last (tables merge key by key).
    pub fn params_for(&self, target_kind: &str, target: &str) -> toml::Table {
        let mut params = self.params.clone();
        for key in [target_kind, target] {
            if let Some(o) = self.targets.get(key) {
                merge(&mut params, &o.params);
            }
        }
        params
    }

    /// Keep only the checks whose ids are in `only` (all when empty). Unknown ids are an error.
    pub fn select(&self, only: &[String]) -> Result<Vec<CheckSpec>, String> {
        if only.is_empty() {
            return Ok(self.checks.clone());
        }
        for id in only {
            if !self.checks.iter().any(|c| &c.id == id) {
                return Err(format!(
                    "check `{id}` is not in gate `{}` (its checks: {})",
                    self.gate,
                    self.checks
                        .iter()
                        .map(|c| c.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Ok(self
            .checks
            .iter()
            .filter(|c| only.contains(&c.id))
            .cloned()
            .collect())
    }
}

fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
version = 1
gate = "t"
[params]
threshold = 80
probe = { image = "redis:7-alpine", wait_secs = 30 }
[[checks]]
id = "a.one"
group = "g"
[[checks]]
id = "a.two"
blocking = false
timeout_secs = 5
[targets.sandbox.params]
threshold = 70
probe = { wait_secs = 10 }
[targets."ssh://root@h".params]
threshold = 60
"#;

    #[test]
    fn parses_with_defaults() {
        let s = GateSpec::parse(SPEC, "t.toml").unwrap();
        assert_eq!(s.checks[0].timeout_secs, 60);
        assert!(s.checks[0].blocking);
        assert_eq!(s.checks[0].group_key(), "g");
        assert_eq!(s.checks[1].group_key(), "a.two");
        assert!(!s.checks[1].blocking);
    }

    #[test]
    fn target_params_merge_deeply_kind_then_exact() {
        let s = GateSpec::parse(SPEC, "t.toml").unwrap();
        let p = s.params_for("sandbox", "sandbox");
        assert_eq!(p["threshold"].as_integer(), Some(70));
        assert_eq!(p["probe"]["image"].as_str(), Some("redis:7-alpine"));
        assert_eq!(p["probe"]["wait_secs"].as_integer(), Some(10));
        let p = s.params_for("ssh", "ssh://root@h");
        assert_eq!(p["threshold"].as_integer(), Some(60));
        let p = s.params_for("local", "local");
        assert_eq!(p["threshold"].as_integer(), Some(80));
    }

    #[test]
    fn rejects_bad_specs_with_reason() {
        for (text, needle) in [
            ("version = 2\ngate='x'\n[[checks]]\nid='a'", "version 2"),
            ("version = 1\ngate='x'\nchecks=[]", "at least one"),
            (
                "version = 1\ngate='x'\n[[checks]]\nid='a'\n[[checks]]\nid='a'",
                "listed twice",
            ),
            (
                "version = 1\ngate='x'\n[[checks]]\nid='a'\nbogus=1",
                "bogus",
            ),
            (
                "version = 1\ngate='x'\n[[checks]]\nid='a'\ntimeout_secs=0",
                "timeout",
            ),
            ("not toml at all [", "invalid gate spec"),
        ] {
            let e = GateSpec::parse(text, "bad.toml").unwrap_err().to_string();
            assert!(e.contains(needle), "{e} should mention {needle}");
            assert!(e.contains("bad.toml"), "{e} should name the file");
        }
    }

    #[test]
    fn select_filters_and_rejects_unknown_ids() {
        let s = GateSpec::parse(SPEC, "t.toml").unwrap();
        assert_eq!(s.select(&[]).unwrap().len(), 2);
        let one = s.select(&["a.two".into()]).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].id, "a.two");
        let e = s.select(&["nope".into()]).unwrap_err();
        assert!(e.contains("nope") && e.contains("a.one"));
    }
}
