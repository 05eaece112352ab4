//! `auth.daemon-authenticated`: the daemon user's Docker Hub credential exists for the
//! expected user, in a file only its owner can read, Docker takes it from that file (no
//! credential helper shadows it), and the registry accepts it: the daemon is asked to log in
//! with it (`POST /auth`, what `docker login` does), and a refusal fails. The secret is
//! registered with the run's redactor the moment it is read and never put in evidence.

use crate::{Ctx, DynCheck};
use async_trait::async_trait;
use base64::Engine;
use ccci_core::redact::{Redactor, MASK};
use ccci_core::{Check, Decided, Evidence, Halt, Outcome, Trail};
use std::sync::Arc;

pub fn checks() -> Vec<DynCheck> {
    vec![Arc::new(DaemonAuthenticated)]
}

/// What a client config says about one registry. The secret is only in [`Login`], whose
/// `Debug` never shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub user: Option<String>,
    pub has_secret: bool,
    /// The credential helper Docker's CLI takes this registry's credential from, and where
    /// the config names it (`credHelpers` or `credsStore`). When one is set Docker asks it,
    /// not `auths` (docker/cli `configfile.GetCredentialsStore`).
    pub helper: Option<(String, &'static str)>,
    /// What a login with the `auths` entry sends, when it has a user and a secret.
    pub login: Option<Login>,
}

/// A login as the daemon's `POST /auth` takes it. Never printed: `Debug` masks the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    password: Option<String>,
    identity_token: Option<String>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| MASK))
            .field(
                "identity_token",
                &self.identity_token.as_ref().map(|_| MASK),
            )
            .finish()
    }
}

impl Login {
    /// The body of `POST /auth` for `registry` (Docker's `AuthConfig`).
    fn body(&self, registry: &str) -> serde_json::Value {
        let mut b = serde_json::json!({ "username": self.username, "serveraddress": registry });
        if let Some(p) = &self.password {
            b["password"] = serde_json::Value::String(p.clone());
        }
        if let Some(t) = &self.identity_token {
            b["identitytoken"] = serde_json::Value::String(t.clone());
        }
        b
    }

    /// The call as evidence shows it: every secret masked.
    fn shown(&self, registry: &str) -> String {
        let mut b = serde_json::json!({ "username": self.username, "serveraddress": registry });
        if self.password.is_some() {
            b["password"] = serde_json::Value::String(MASK.into());
        }
        if self.identity_token.is_some() {
            b["identitytoken"] = serde_json::Value::String(MASK.into());
        }
        format!("POST /auth {b}")
    }
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
    // Docker's CLI (cli/config/configfile): a `credHelpers` entry for the registry, even an
    // empty one (= the file itself), wins over `credsStore`
    let helper = match get_ci(&v, "credHelpers")?
        .and_then(|h| h.get(registry))
        .map(|x| x.as_str().unwrap_or_default())
    {
        Some("") => None,
        Some(h) => Some((h.to_string(), "credHelpers")),
        None => get_str_ci(&v, "credsStore")?
            .filter(|x| !x.is_empty())
            .map(|x| (x.to_string(), "credsStore")),
    };
    // the file store: the exact key, else a key that names the same host (a URL form such as
    // `https://host/v2/`), as the CLI's legacy-key fallback reads it
    let entry = match get_ci(&v, "auths")? {
        Some(a) => a.get(registry).cloned().or_else(|| {
            a.as_object().and_then(|m| {
                m.iter()
                    .find(|(k, _)| hostname_of(k) == registry)
                    .map(|(_, e)| e.clone())
            })
        }),
        None => None,
    };
    let mut cred = Credential {
        user: None,
        has_secret: false,
        helper,
        login: None,
    };
    let nonempty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(String::from);
    if let Some(e) = &entry {
        let mut password = None;
        if let Some(a) = get_str_ci(e, "auth")? {
            // Go's decoder (what the CLI uses) skips line breaks inside the value
            let clean: String = a
                .trim()
                .chars()
                .filter(|c| *c != '\n' && *c != '\r')
                .collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(clean)
                .map_err(|_| format!("auths[{registry}].auth is not base64"))?;
            let dec = String::from_utf8_lossy(&bytes).into_owned();
            let (user, secret) = dec
                .split_once(':')
                .ok_or_else(|| format!("auths[{registry}].auth is not user:secret"))?;
            cred.user = Some(user.to_string());
            password = nonempty(Some(secret));
        }
        if cred.user.is_none() {
            cred.user = get_str_ci(e, "username")?.map(String::from);
        }
        if password.is_none() {
            password = nonempty(get_str_ci(e, "password")?);
        }
        let identity_token = nonempty(get_str_ci(e, "identitytoken")?);
        cred.has_secret = password.is_some() || identity_token.is_some();
        if let (Some(u), true) = (&cred.user, cred.has_secret) {
            cred.login = Some(Login {
                username: u.clone(),
                password,
                identity_token,
            });
        }
    }
    let masked = serde_json::to_string_pretty(&masked_v).unwrap_or_default();
    Ok((cred, masked))
}

/// The host part of an `auths` key as Docker's CLI reduces a legacy key (`ConvertToHostname`):
/// without `http://`/`https://` and without anything from the first `/`.
pub fn hostname_of(key: &str) -> &str {
    let k = key
        .strip_prefix("http://")
        .or_else(|| key.strip_prefix("https://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
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
    match (&cred.helper, &cred.user, cred.has_secret) {
        // Docker's CLI asks the helper whenever one is set, whatever `auths` holds
        (Some((h, key)), user, _) => bad.push(format!(
            "Docker takes the credential for {registry} from the credential helper `{h}` (`{key}`), not from `auths`{}; this check does not run credential helpers (what they print is the secret), so it cannot show that the registry accepts the credential Docker uses",
            if user.is_some() { " (its `auths` entry is shadowed)" } else { "" }
        )),
        (None, Some(u), true) if u == expected_user => {}
        (None, Some(u), true) => bad.push(format!("the credential is for user `{u}`, expected `{expected_user}`")),
        (None, Some(u), false) => bad.push(format!("the credential for `{u}` has no secret")),
        (None, None, _) => bad.push(format!("no credential for {registry}")),
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
        "the daemon user's Docker Hub credential exists for the expected user, Docker takes it from the file (no credential helper), the registry accepts it (the daemon logs in), the file (links followed) is 0600 or 0400 and the daemon user's, the secret never printed"
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
    if o.verdict == ccci_core::Verdict::Pass {
        let Some(login) = &cred.login else {
            return Err(Halt::error(
                "a passing credential without a login (a defect)",
            ));
        };
        let status = ask_registry(ctx, t, login, &a.registry).await?;
        o.detail = format!("{} (the registry accepts it: {status})", o.detail);
    }
    if chain.len() > 1 {
        o.detail = format!("{} ({})", o.detail, chain.join(" -> "));
    }
    Ok(o)
}

/// Ask the target's daemon to log in to `registry` with `login` (`POST /auth`, what `docker
/// login` sends): the daemon talks to the registry from the host, as its pulls do. A refusal
/// is a fail; anything else that is not "Login Succeeded" (registry unreachable, the daemon
/// not answering) is an error. Returns the daemon's status line.
async fn ask_registry(
    ctx: &Ctx,
    t: &mut Trail,
    login: &Login,
    registry: &str,
) -> Result<String, Halt> {
    let docker = ctx.docker().await?;
    let call = login.shown(registry);
    let body = serde_json::to_vec(&login.body(registry))
        .map_err(|e| Halt::error(format!("cannot encode the login: {e}")))?;
    match daemon_auth(docker, body).await {
        Ok(answer) => {
            let v: serde_json::Value = match serde_json::from_str(&answer) {
                Ok(v) => v,
                Err(_) => {
                    t.api(call, ctx.redactor.scrub(&answer));
                    return Err(Halt::error(
                        "the daemon's answer to POST /auth is not JSON: it did not log in",
                    ));
                }
            };
            let status = v
                .get("Status")
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .to_string();
            // a registry may hand back a token for later logins: a secret too
            let token = v
                .get("IdentityToken")
                .and_then(|x| x.as_str())
                .unwrap_or("");
            if !token.is_empty() {
                ctx.redactor.add(token);
            }
            let shown = serde_json::json!({
                "Status": status,
                "IdentityToken": if token.is_empty() { "" } else { MASK },
            });
            t.api(call, format!("200 {shown}"));
            if status.contains("Login Succeeded") {
                Ok(status)
            } else {
                Err(Halt::error(format!(
                    "the daemon answered POST /auth with status `{status}`, not `Login Succeeded`"
                )))
            }
        }
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        }) => {
            let message = ctx.redactor.scrub(&message);
            t.api(call, format!("{status_code} {message}"));
            if refused(status_code, &message) {
                Err(Halt::fail(format!(
                    "the registry refuses the credential of `{}` for {registry}: {message}",
                    login.username
                )))
            } else {
                Err(Halt::error(format!(
                    "cannot ask {registry} whether it accepts the credential: the daemon answered {status_code}: {message}"
                )))
            }
        }
        Err(e) => {
            let e = ctx.redactor.scrub(&e.to_string());
            t.api(call, e.clone());
            Err(Halt::error(format!(
                "cannot ask {registry} whether it accepts the credential: {e}"
            )))
        }
    }
}

/// The daemon's answer to a login says the registry refused the credential: Docker 20.10
/// answers 500 with the registry's `401 Unauthorized` in the message, newer engines 401;
/// Docker Hub says `incorrect username or password`.
pub fn refused(status_code: u16, message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    status_code == 401
        || m.contains("401 unauthorized")
        || m.contains("unauthorized:")
        || m.contains("incorrect username or password")
}

/// `POST /auth` with `body`, through bollard. Bollard 0.21 has no call for this endpoint, so
/// its `/_ping` request is rewritten by a request modifier (path, method, body): the
/// connection, API version and error decoding stay bollard's.
async fn daemon_auth(
    docker: bollard::Docker,
    body: Vec<u8>,
) -> Result<String, bollard::errors::Error> {
    let body = bytes::Bytes::from(body);
    let docker = docker.with_request_modifier(move |mut req| {
        let uri = req.uri().to_string();
        let Some(at) = uri.rfind("/_ping") else {
            return req; // the daemon then answers `OK`, which is no login: an error
        };
        let rewritten = format!("{}/auth{}", &uri[..at], &uri[at + "/_ping".len()..]);
        let Ok(new_uri) = rewritten.parse() else {
            return req;
        };
        *req.uri_mut() = new_uri;
        *req.method_mut() = http::Method::POST;
        req.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        *req.body_mut() = bollard::body_full(body.clone());
        req
    });
    docker.ping().await
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

    /// What Docker's CLI accepts for a registry (measured with docker 28.2 against the
    /// sandbox's authenticated registry, from the adversarial read): a key written as a URL, a
    /// line break inside `auth`, an empty `credHelpers` entry (the file) beside a `credsStore`.
    #[test]
    fn reads_the_credential_where_dockers_cli_reads_it() {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("u:{CANARY}"));
        let reg = "127.0.0.1:5001";
        for key in [
            "https://127.0.0.1:5001",
            "http://127.0.0.1:5001/v2/",
            "127.0.0.1:5001/",
        ] {
            let text = format!(r#"{{"auths":{{"{key}":{{"auth":"{auth}"}}}}}}"#);
            let (cred, _) = read_credential(&text, reg, &Redactor::new()).unwrap();
            assert_eq!(cred.user.as_deref(), Some("u"), "{key}");
            assert!(cred.has_secret && cred.helper.is_none(), "{key}");
        }
        // another host's key is not this registry's
        let text = format!(r#"{{"auths":{{"https://127.0.0.1:50011":{{"auth":"{auth}"}}}}}}"#);
        assert!(read_credential(&text, reg, &Redactor::new())
            .unwrap()
            .0
            .user
            .is_none());
        let (head, tail) = auth.split_at(4);
        let text = format!(r#"{{"auths":{{"{reg}":{{"auth":"{head}\n{tail}"}}}}}}"#);
        let (cred, _) = read_credential(&text, reg, &Redactor::new()).unwrap();
        assert_eq!(cred.user.as_deref(), Some("u"));
        let text = format!(
            r#"{{"credsStore":"nosuchhelper","credHelpers":{{"{reg}":""}},"auths":{{"{reg}":{{"auth":"{auth}"}}}}}}"#
        );
        let (cred, _) = read_credential(&text, reg, &Redactor::new()).unwrap();
        assert!(cred.helper.is_none(), "an empty entry names the file");
        assert!(cred.has_secret);
        // a helper for another registry only: credsStore applies
        let text = format!(
            r#"{{"credsStore":"pass","credHelpers":{{"other:5000":"ecr"}},"auths":{{"{reg}":{{"auth":"{auth}"}}}}}}"#
        );
        let (cred, _) = read_credential(&text, reg, &Redactor::new()).unwrap();
        assert_eq!(cred.helper, Some(("pass".to_string(), "credsStore")));
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

    /// Docker's CLI asks a credential helper whenever one applies to the registry
    /// (`credHelpers[registry]`, else `credsStore`), whatever `auths` holds: a right `auths`
    /// entry beside a helper does not pass.
    #[test]
    fn a_helper_shadows_auths() {
        use ccci_core::Verdict::*;
        let r = Redactor::new();
        let reg = "127.0.0.1:5001";
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("u:{CANARY}"));
        let entry = format!(r#""auths":{{"{reg}":{{"auth":"{auth}"}}}}"#);
        // (config, helper Docker uses, where it is named) — by hand from docker/cli
        let cases = [
            (
                format!(r#"{{{entry},"credsStore":"desktop"}}"#),
                Some(("desktop", "credsStore")),
            ),
            (
                format!(r#"{{{entry},"CredHelpers":{{"{reg}":"pass"}},"credsStore":"desktop"}}"#),
                Some(("pass", "credHelpers")),
            ),
            (
                format!(r#"{{{entry},"credHelpers":{{"other.invalid":"pass"}}}}"#),
                None,
            ),
            (format!(r#"{{{entry},"credsStore":""}}"#), None),
        ];
        for (text, want) in cases {
            let (c, masked) = read_credential(&text, reg, &r).unwrap();
            assert!(!masked.contains(CANARY));
            assert_eq!(
                c.helper.as_ref().map(|(h, k)| (h.as_str(), *k)),
                want,
                "{text}"
            );
            let o = decide(&c, "u", "600", "root", "root", reg);
            match want {
                Some((h, k)) => {
                    assert_eq!(o.verdict, Fail, "{text}");
                    assert!(
                        o.detail
                            .contains(&format!("credential helper `{h}` (`{k}`)"))
                            && o.detail.contains("shadowed"),
                        "{}",
                        o.detail
                    );
                }
                None => assert_eq!(o.verdict, Pass, "{text}: {}", o.detail),
            }
        }
    }

    #[test]
    fn the_login_is_what_the_entry_holds_and_never_shown() {
        let r = Redactor::new();
        let reg = "r.example";
        let (c, _) = read_credential(
            &format!(r#"{{"auths":{{"{reg}":{{"Username":"u","Password":"{CANARY}"}}}}}}"#),
            reg,
            &r,
        )
        .unwrap();
        let l = c.login.clone().unwrap();
        assert_eq!(
            l.body(reg),
            serde_json::json!({"username":"u","password":CANARY,"serveraddress":reg})
        );
        for shown in [format!("{l:?}"), format!("{c:?}"), l.shown(reg)] {
            assert!(!shown.contains(CANARY), "{shown}");
        }
        assert_eq!(
            l.shown(reg),
            r#"POST /auth {"password":"[REDACTED]","serveraddress":"r.example","username":"u"}"#
        );
        let (c, _) = read_credential(
            &format!(r#"{{"auths":{{"{reg}":{{"username":"u","identitytoken":"{CANARY}"}}}}}}"#),
            reg,
            &r,
        )
        .unwrap();
        assert_eq!(
            c.login.unwrap().body(reg),
            serde_json::json!({"username":"u","identitytoken":CANARY,"serveraddress":reg})
        );
        // an empty secret is no login
        let (c, _) = read_credential(
            r#"{"auths":{"r.example":{"username":"u","password":""}}}"#,
            reg,
            &r,
        )
        .unwrap();
        assert!(c.login.is_none() && !c.has_secret);
    }

    /// The daemons' answers, as measured: Docker 20.10 against the sandbox's htpasswd registry,
    /// an unreachable Docker Hub; Docker Hub's refusal as its documentation gives it.
    #[test]
    fn what_a_refusal_is() {
        assert!(refused(
            500,
            "login attempt to http://127.0.0.1:5001/v2/ failed with status: 401 Unauthorized"
        ));
        assert!(refused(401, "anything"));
        assert!(refused(
            500,
            "Get \"https://registry-1.docker.io/v2/\": unauthorized: incorrect username or password"
        ));
        assert!(!refused(
            500,
            "Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io on 10.255.255.53:53: dial udp 10.255.255.53:53: connect: network is unreachable"
        ));
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
