//! `auth.daemon-authenticated`: the daemon user's Docker Hub credential exists for the
//! expected user, in a file only its owner can read. The secret is registered with the run's
//! redactor the moment it is read and never put in evidence.

use crate::{Ctx, DynCheck};
use async_trait::async_trait;
use base64::Engine;
use ccci_core::redact::{Redactor, MASK};
use ccci_core::{Check, Decided, Evidence, Halt, Outcome, Trail};
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

/// Register every secret of a Docker client config with `redactor` (masked by default: see
/// [`crate::client_config`]). The gate calls this before any check runs.
pub fn register_secrets(text: &str, redactor: &Redactor) {
    crate::client_config::register_secrets(text, redactor);
}

/// Read `auths[registry]` of a Docker client config, its keys matched case-insensitively as
/// Docker's CLI matches them (`Auths`, `Auth` are a working credential). Every secret of the
/// config is added to `redactor`. Returns the credential and the config re-serialised with
/// every secret masked.
pub fn read_credential(
    text: &str,
    registry: &str,
    redactor: &Redactor,
) -> Result<(Credential, String), String> {
    use crate::client_config::{get_ci, get_str_ci};
    // registered first: whatever the config holds is masked even if it is not read below
    crate::client_config::register_secrets(text, redactor);
    let original: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let mut masked_v = original.clone();
    crate::client_config::mask(&mut masked_v, redactor);
    let v = original;
    let helper = match get_ci(&v, "credHelpers")? {
        Some(h) => h.get(registry).and_then(|x| x.as_str()),
        None => None,
    }
    .or(get_str_ci(&v, "credsStore")?)
    .map(String::from);
    let entry = match get_ci(&v, "auths")? {
        Some(a) => a.get(registry).cloned(),
        None => None,
    };
    let mut cred = Credential {
        user: None,
        has_secret: false,
        helper,
    };
    if let Some(e) = &entry {
        if let Some(a) = get_str_ci(e, "auth")? {
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
            cred.user = get_str_ci(e, "username")?.map(String::from);
        }
        if !cred.has_secret {
            for k in ["password", "identitytoken"] {
                cred.has_secret |= get_str_ci(e, k)?.is_some_and(|s| !s.is_empty());
            }
        }
    }
    let masked = serde_json::to_string_pretty(&masked_v).unwrap_or_default();
    Ok((cred, masked))
}

/// The decision from the credential and the `stat` of the file the path resolves to (mode in
/// octal, owner): 0600 or 0400 (sops-nix renders secrets 0400) owned by `owner`.
pub fn decide(
    cred: &Credential,
    expected_user: &str,
    mode: &str,
    file_owner: &str,
    owner: &str,
    registry: &str,
) -> Outcome {
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
            "the file's mode is {mode}, expected 600 or 400 (only the owner may read it)"
        ));
    }
    if file_owner != owner {
        bad.push(format!(
            "the file is owned by `{file_owner}`, expected `{owner}` (the daemon's user)"
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
        "the daemon user's Docker Hub credential exists for the expected user, the file (links followed) is 0600 or 0400 and the daemon user's, the secret never printed"
    }
    async fn run(&self, ctx: &Ctx) -> Outcome {
        let mut t = Trail::new();
        let r = daemon_authenticated(ctx, &mut t).await;
        t.conclude(r)
    }
}

async fn daemon_authenticated(ctx: &Ctx, t: &mut Trail) -> Decided {
    let a = &ctx.params.auth;
    let Some(expected) = &a.expected_user else {
        return Err(Halt::error(
            "the gate spec sets no [params.auth] expected_user",
        ));
    };
    let path = a.config_path.as_str();
    // Follow the path link by link (sops-nix renders the secret under /run/secrets-rendered/
    // and links the config to it): each hop is evidence, and the mode and owner that count
    // are those of the file at the end, not the link's own 0777.
    let mut chain = vec![path.to_string()];
    let mut cur = path.to_string();
    for _ in 0..MAX_LINKS {
        let link = ctx
            .cmd(t, &["readlink", "--", &cur])
            .await
            .map_err(|_| Halt::error(format!("cannot read {cur}")))?;
        if !link.ok() {
            break; // not a link (or missing: stat says which)
        }
        let target = link.stdout_str().trim().to_string();
        cur = resolve_link(&cur, &target);
        if chain.contains(&cur) {
            return Err(Halt::fail(format!(
                "{path} is a symlink loop: {}",
                chain.join(" -> ")
            )));
        }
        chain.push(cur.clone());
    }
    if chain.len() > 1 {
        t.note("symlink chain", chain.join(" -> "));
    }
    let stat = ctx
        .cmd(t, &["stat", "-L", "-c", "%a %U", "--", path])
        .await
        .map_err(|_| Halt::error(format!("cannot stat {path}")))?;
    if !stat.ok() {
        return Err(Halt::fail(format!(
            "{} does not exist or cannot be read: the daemon pulls anonymously",
            chain.join(" -> ")
        )));
    }
    let stat_s = stat.stdout_str();
    let mut words = stat_s.split_whitespace();
    let mode = words.next().unwrap_or("").to_string();
    let file_owner = words.next().unwrap_or("").to_string();
    let bytes = match ctx.target.read_file(path).await {
        Ok(Some(b)) => b,
        Ok(None) => return Err(Halt::fail(format!("{path} does not exist"))),
        Err(e) => return Err(Halt::error(format!("cannot read {path}: {e}"))),
    };
    let text = String::from_utf8_lossy(&bytes);
    let (cred, masked) = read_credential(&text, &a.registry, &ctx.redactor)
        .map_err(|e| Halt::fail(format!("{path}: {e}")))?;
    t.push(Evidence::new(
        format!("cat -- {path}   # secrets masked by ccci-verify"),
        Some(0),
        masked,
    ));
    t.note(
        format!("decoded auths[{}].auth", a.registry),
        format!(
            "user={} secret={}",
            cred.user.clone().unwrap_or_else(|| "(none)".into()),
            if cred.has_secret { MASK } else { "(empty)" }
        ),
    );
    let mut o = decide(&cred, expected, &mode, &file_owner, &a.owner, &a.registry);
    if chain.len() > 1 {
        o.detail = format!("{} ({})", o.detail, chain.join(" -> "));
    }
    Ok(o)
}

/// How many links a credential path may go through.
const MAX_LINKS: usize = 16;

/// Where a link at `link` pointing at `target` leads (a relative target is relative to the
/// link's directory; `.` and `..` are resolved textually, as the kernel does for a path whose
/// parents are directories).
pub fn resolve_link(link: &str, target: &str) -> String {
    let joined = if target.starts_with('/') {
        target.to_string()
    } else {
        let dir = link.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        format!("{dir}/{target}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
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
    fn every_secret_in_the_config_is_masked_and_registered() {
        let r = Redactor::new();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("u:{CANARY}-a"));
        let text = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"r.example":{{"username":"u","password":"{CANARY}-p","identitytoken":"{CANARY}-i"}}}},
               "HttpHeaders":{{"X-Meta-Token":"{CANARY}-h"}},
               "proxies":{{"default":{{"httpProxy":"http://pu:{CANARY}-x@proxy:3128","noProxy":"localhost"}}}}}}"#
        );
        let (_, masked) = read_credential(&text, "https://index.docker.io/v1/", &r).unwrap();
        assert!(!masked.contains(CANARY), "{masked}");
        // what is no secret stays readable
        for keep in [
            "r.example",
            "X-Meta-Token",
            "http://pu:",
            "@proxy:3128",
            "localhost",
        ] {
            assert!(masked.contains(keep), "{keep} in {masked}");
        }
        for suffix in ["a", "p", "i", "h", "x"] {
            let secret = format!("{CANARY}-{suffix}");
            assert_eq!(
                r.scrub(&format!("<{secret}>")),
                format!("<{MASK}>"),
                "{suffix}"
            );
        }
        // register_secrets alone registers the same set
        let r2 = Redactor::new();
        register_secrets(&text, &r2);
        assert_eq!(r2.scrub(&format!("{CANARY}-x")), MASK);
        register_secrets("not json", &r2);
    }

    #[test]
    fn a_credential_in_any_spelling_is_read_and_two_spellings_are_refused() {
        let r = Redactor::new();
        let reg = "https://index.docker.io/v1/";
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("nptest2:{CANARY}"));
        let text = format!(r#"{{"AUTHS":{{"{reg}":{{"Auth":"{auth}"}}}}}}"#);
        let (c, masked) = read_credential(&text, reg, &r).unwrap();
        assert_eq!(c.user.as_deref(), Some("nptest2"));
        assert!(c.has_secret);
        assert!(
            !masked.contains(CANARY) && !masked.contains(&auth),
            "{masked}"
        );
        let text = format!(r#"{{"auths":{{}},"Auths":{{"{reg}":{{"auth":"{auth}"}}}}}}"#);
        let e = read_credential(&text, reg, &r).unwrap_err();
        assert!(e.contains("ambiguous"), "{e}");
    }

    #[test]
    fn decisions() {
        use ccci_core::Verdict::*;
        let r = Redactor::new();
        let reg = "https://index.docker.io/v1/";
        let (c, _) = read_credential(&config("nptest2"), reg, &r).unwrap();
        assert_eq!(
            decide(&c, "nptest2", "600", "root", "root", reg).verdict,
            Pass
        );
        // sops-nix renders secrets 0400
        assert_eq!(
            decide(&c, "nptest2", "400", "root", "root", reg).verdict,
            Pass
        );
        for bad in ["644", "640", "604", "440", "777"] {
            assert_eq!(
                decide(&c, "nptest2", bad, "root", "root", reg).verdict,
                Fail,
                "{bad}"
            );
        }
        let o = decide(&c, "nptest2", "400", "nobody", "root", reg);
        assert_eq!(o.verdict, Fail);
        assert!(
            o.detail.contains("owned by `nobody`, expected `root`"),
            "{}",
            o.detail
        );
        assert_eq!(
            decide(&c, "someone", "600", "root", "root", reg).verdict,
            Fail
        );
        let (c, _) = read_credential(r#"{"auths":{}}"#, reg, &r).unwrap();
        assert_eq!(
            decide(&c, "nptest2", "600", "root", "root", reg).verdict,
            Fail
        );
        let (c, _) = read_credential(r#"{"credsStore":"pass"}"#, reg, &r).unwrap();
        let o = decide(&c, "nptest2", "600", "root", "root", reg);
        assert!(o.detail.contains("credential helper `pass`"));
        assert!(read_credential("{not json", reg, &r).is_err());
    }

    #[test]
    fn links_resolve_like_the_kernel() {
        assert_eq!(
            resolve_link(
                "/root/.docker/config.json",
                "/run/secrets-rendered/docker-config.json"
            ),
            "/run/secrets-rendered/docker-config.json"
        );
        assert_eq!(
            resolve_link("/root/.docker/config.json", "../../run/secrets/x"),
            "/run/secrets/x"
        );
        assert_eq!(resolve_link("/a/b", "c"), "/a/c");
    }
}
