//! `auth.daemon-authenticated`: the daemon user's Docker Hub credential exists for the
//! expected user, in a file only its owner can read. The secret is registered with the run's
//! redactor the moment it is read and never put in evidence.

use crate::{Ctx, DynCheck};
use async_trait::async_trait;
use base64::Engine;
use ccci_core::redact::{Redactor, MASK};
use ccci_core::{Check, Evidence, Outcome};
use std::sync::Arc;

pub fn checks() -> Vec<DynCheck> {
    vec![Arc::new(DaemonAuthenticated)]
}

/// What a client config says about one registry, with the secret kept out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub user: Option<String>,
    pub has_secret: bool,
    pub helper: Option<String>,
}

/// Read `auths[registry]` of a Docker client config. Every secret found is added to
/// `redactor`. Returns the credential and the config re-serialised with secrets masked.
pub fn read_credential(
    text: &str,
    registry: &str,
    redactor: &Redactor,
) -> Result<(Credential, String), String> {
    let mut v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    // register every secret-looking value first, whatever registry it is for
    if let Some(auths) = v.get("auths").and_then(|a| a.as_object()) {
        for entry in auths.values() {
            for key in ["auth", "password", "identitytoken", "registrytoken"] {
                if let Some(s) = entry.get(key).and_then(|x| x.as_str()) {
                    redactor.add(s);
                    if key == "auth" {
                        if let Ok(bytes) =
                            base64::engine::general_purpose::STANDARD.decode(s.trim())
                        {
                            let dec = String::from_utf8_lossy(&bytes).into_owned();
                            if let Some((_, secret)) = dec.split_once(':') {
                                redactor.add(secret);
                            }
                        }
                    }
                }
            }
        }
    }
    let helper = v
        .get("credHelpers")
        .and_then(|h| h.get(registry))
        .or_else(|| v.get("credsStore"))
        .and_then(|x| x.as_str())
        .map(String::from);
    let entry = v.get("auths").and_then(|a| a.get(registry)).cloned();
    let mut cred = Credential {
        user: None,
        has_secret: false,
        helper,
    };
    if let Some(e) = &entry {
        if let Some(a) = e.get("auth").and_then(|x| x.as_str()) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .map_err(|_| format!("auths[{registry}].auth is not base64"))?;
            let dec = String::from_utf8_lossy(&bytes).into_owned();
            let (user, secret) = dec
                .split_once(':')
                .ok_or_else(|| format!("auths[{registry}].auth is not user:secret"))?;
            cred.user = Some(user.to_string());
            cred.has_secret = !secret.is_empty();
        }
        if cred.user.is_none() {
            cred.user = e.get("username").and_then(|x| x.as_str()).map(String::from);
        }
        if !cred.has_secret {
            cred.has_secret = ["password", "identitytoken"].iter().any(|k| {
                e.get(*k)
                    .and_then(|x| x.as_str())
                    .is_some_and(|s| !s.is_empty())
            });
        }
    }
    // masked copy for evidence
    if let Some(auths) = v.get_mut("auths").and_then(|a| a.as_object_mut()) {
        for entry in auths.values_mut() {
            if let Some(o) = entry.as_object_mut() {
                for key in ["auth", "password", "identitytoken", "registrytoken"] {
                    if o.contains_key(key) {
                        o.insert(key.to_string(), serde_json::Value::String(MASK.into()));
                    }
                }
            }
        }
    }
    let masked = serde_json::to_string_pretty(&v).unwrap_or_default();
    Ok((cred, masked))
}

/// The decision from the credential and the file's `stat` (mode in octal, owner).
pub fn decide(cred: &Credential, expected_user: &str, mode: &str, registry: &str) -> Outcome {
    let mut bad = Vec::new();
    match (&cred.user, cred.has_secret) {
        (Some(u), true) if u == expected_user => {}
        (Some(u), true) => bad.push(format!("the credential is for user `{u}`, expected `{expected_user}`")),
        (Some(u), false) => bad.push(format!("the credential for `{u}` has no secret")),
        (None, _) => bad.push(match &cred.helper {
            Some(h) => format!(
                "no inline credential for {registry}; it is kept by the credential helper `{h}`, which this check does not query"
            ),
            None => format!("no credential for {registry}"),
        }),
    }
    if mode != "600" && mode != "400" {
        bad.push(format!(
            "the file's mode is {mode}, expected 600 (only the owner may read it)"
        ));
    }
    if bad.is_empty() {
        Outcome::pass(format!(
            "authenticated to {registry} as `{expected_user}`, file mode {mode}"
        ))
    } else {
        Outcome::fail(bad.join("; "))
    }
}

struct DaemonAuthenticated;
#[async_trait]
impl Check<Ctx> for DaemonAuthenticated {
    fn id(&self) -> &'static str {
        "auth.daemon-authenticated"
    }
    fn title(&self) -> &'static str {
        "the daemon user's Docker Hub credential exists for the expected user, the file is 0600, the secret never printed"
    }
    async fn run(&self, ctx: &Ctx) -> Outcome {
        let a = &ctx.params.auth;
        let Some(expected) = &a.expected_user else {
            return Outcome::error("the gate spec sets no [params.auth] expected_user");
        };
        let path = a.config_path.as_str();
        let (stat, ev) = ctx.run(&["stat", "-c", "%a %U", "--", path]).await;
        let mut evidence = vec![ev];
        let Some(stat) = stat else {
            return Outcome::error(format!("cannot stat {path}")).with_evidence(evidence);
        };
        if !stat.ok() {
            return Outcome::fail(format!(
                "{path} does not exist or cannot be read: the daemon pulls anonymously"
            ))
            .with_evidence(evidence);
        }
        let stat_s = stat.stdout_str();
        let mode = stat_s.split_whitespace().next().unwrap_or("").to_string();
        let bytes = match ctx.target.read_file(path).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                return Outcome::fail(format!("{path} does not exist")).with_evidence(evidence)
            }
            Err(e) => {
                return Outcome::error(format!("cannot read {path}: {e}")).with_evidence(evidence)
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        match read_credential(&text, &a.registry, &ctx.redactor) {
            Ok((cred, masked)) => {
                evidence.push(Evidence::new(
                    format!("cat -- {path}   # secrets masked by ccci-verify"),
                    Some(0),
                    masked,
                ));
                evidence.push(Evidence::note(
                    format!("decoded auths[{}].auth", a.registry),
                    format!(
                        "user={} secret={}",
                        cred.user.clone().unwrap_or_else(|| "(none)".into()),
                        if cred.has_secret { MASK } else { "(empty)" }
                    ),
                ));
                decide(&cred, expected, &mode, &a.registry).with_evidence(evidence)
            }
            Err(e) => Outcome::fail(format!("{path}: {e}")).with_evidence(evidence),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "canary-s3cr3t-d0-not-print";

    fn config(user: &str) -> String {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{CANARY}"));
        format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}}}}}}"#)
    }

    #[test]
    fn reads_user_and_never_returns_the_secret() {
        let r = Redactor::new();
        let (cred, masked) =
            read_credential(&config("nptest2"), "https://index.docker.io/v1/", &r).unwrap();
        assert_eq!(cred.user.as_deref(), Some("nptest2"));
        assert!(cred.has_secret);
        assert!(!masked.contains(CANARY));
        assert!(masked.contains(MASK));
        // the redactor now scrubs the secret and its base64 form anywhere
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("nptest2:{CANARY}"));
        assert_eq!(
            r.scrub(&format!("x {CANARY} {b64}")),
            format!("x {MASK} {MASK}")
        );
    }

    #[test]
    fn decisions() {
        use ccci_core::Verdict::*;
        let r = Redactor::new();
        let reg = "https://index.docker.io/v1/";
        let (c, _) = read_credential(&config("nptest2"), reg, &r).unwrap();
        assert_eq!(decide(&c, "nptest2", "600", reg).verdict, Pass);
        assert_eq!(decide(&c, "nptest2", "644", reg).verdict, Fail);
        assert_eq!(decide(&c, "someone", "600", reg).verdict, Fail);
        let (c, _) = read_credential(r#"{"auths":{}}"#, reg, &r).unwrap();
        assert_eq!(decide(&c, "nptest2", "600", reg).verdict, Fail);
        let (c, _) = read_credential(r#"{"credsStore":"pass"}"#, reg, &r).unwrap();
        let o = decide(&c, "nptest2", "600", reg);
        assert!(o.detail.contains("credential helper `pass`"));
        assert!(read_credential("{not json", reg, &r).is_err());
    }
}
