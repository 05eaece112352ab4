//! The JSON schemas of the two reports (`docs/schema/*.json`), compiled once per process with
//! the `jsonschema` crate. Every report a suite parses goes through [`assert_valid`] (the prune's
//! `Run::json`, the gate's `assert_contract`, ...), so every report the suites produce is
//! checked against its schema.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

/// The prune's `--json` object.
pub const PRUNE_REPORT: &str = "prune-report.v1.json";
/// The gate's `--format json` report.
pub const GATE_REPORT: &str = "gate-report.v1.json";

fn validators() -> &'static Mutex<HashMap<&'static str, &'static jsonschema::Validator>> {
    static V: OnceLock<Mutex<HashMap<&'static str, &'static jsonschema::Validator>>> =
        OnceLock::new();
    V.get_or_init(Default::default)
}

/// The compiled schema `docs/schema/<name>`.
pub fn validator(name: &'static str) -> &'static jsonschema::Validator {
    let mut map = validators().lock().unwrap_or_else(|e| e.into_inner());
    map.entry(name).or_insert_with(|| {
        let path = crate::workspace_root().join("docs/schema").join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("schema {}: {e}", path.display()));
        let schema: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("schema {} is not JSON: {e}", path.display()));
        let v = jsonschema::validator_for(&schema)
            .unwrap_or_else(|e| panic!("schema {} does not compile: {e}", path.display()));
        Box::leak(Box::new(v))
    })
}

/// What is wrong with `v` against `docs/schema/<name>` (empty: valid).
pub fn errors(name: &'static str, v: &Value) -> Vec<String> {
    validator(name)
        .iter_errors(v)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Panics, naming every violation, unless `v` validates against `docs/schema/<name>`.
pub fn assert_valid(name: &'static str, v: &Value) {
    let errs = errors(name, v);
    assert!(
        errs.is_empty(),
        "the report does not validate against docs/schema/{name}: {errs:#?}\n{v}"
    );
}
