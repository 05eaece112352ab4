//! The Docker client config (`~/.docker/config.json`) as the CLI reads it, and its secrets.
//! A shared leaf: it decides no verdict.
//!
//! Docker's CLI decodes the file with Go's `encoding/json`, which matches object keys to its
//! fields case-insensitively: `{"Auths":{"r":{"Auth":"…"}}}` is a working credential. So every
//! key here is read case-insensitively, and two spellings of one key in one object (Go would
//! merge or overwrite them, depending on the field) are reported as ambiguous rather than
//! guessed.
//!
//! Secrets are masked by default: every string value of the config is a secret except the
//! known non-secret fields of [`classify`] (formats, helper names, usernames, proxy addresses
//! with their user info masked…). A field Docker adds tomorrow is masked until it is listed.

use base64::Engine;
use ccci_core::redact::{Redactor, MASK};
use serde_json::Value;

/// How a string value of the config is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Masked and registered with the redactor.
    Secret,
    /// Known to hold no secret: shown as it is.
    Plain,
    /// A proxy address: shown, with any user info (`user:pass@`, scheme or not) masked.
    Proxy,
}

/// Top-level string fields of Docker's `ConfigFile` that hold no secret (lower case).
const PLAIN_TOP: &[&str] = &[
    "psformat",
    "imagesformat",
    "networksformat",
    "pluginsformat",
    "volumesformat",
    "statsformat",
    "serviceinspectformat",
    "servicesformat",
    "tasksformat",
    "secretformat",
    "configformat",
    "nodesformat",
    "detachkeys",
    "credsstore",
    "experimental",
    "currentcontext",
    "stackorchestrator",
];

/// Top-level maps of string to string that hold no secret.
const PLAIN_MAPS: &[&str] = &["credhelpers", "aliases", "features"];

/// Top-level lists of strings that hold no secret.
const PLAIN_LISTS: &[&str] = &["prunefilters", "clipluginsextradirs"];

/// Fields of an `auths` entry that hold no secret (`auth`, `password`, `identitytoken`,
/// `registrytoken` and anything else are secrets).
const PLAIN_AUTH_FIELDS: &[&str] = &["username", "email", "serveraddress"];

/// Proxy fields whose value is an address (its user info masked); `noproxy` is a plain list.
const PROXY_FIELDS: &[&str] = &["httpproxy", "httpsproxy", "ftpproxy", "allproxy"];

/// One step of the path to a value: an object key (lower-cased) or an array item.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Item,
}

/// How the string at `path` is shown. Only the shapes Docker defines are non-secret: the same
/// name at another depth (`credsStore` as an object) is a secret.
fn classify(path: &[Seg]) -> Kind {
    use Seg::*;
    fn key(s: &Seg) -> Option<&str> {
        match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Item => None,
        }
    }
    match path {
        [Key(top)] if PLAIN_TOP.contains(&top.as_str()) => Kind::Plain,
        [Key(top), Key(_)] if PLAIN_MAPS.contains(&top.as_str()) => Kind::Plain,
        [Key(top), Item] if PLAIN_LISTS.contains(&top.as_str()) => Kind::Plain,
        [Key(top), Key(_), field] if top == "auths" => match key(field) {
            Some(f) if PLAIN_AUTH_FIELDS.contains(&f) => Kind::Plain,
            _ => Kind::Secret,
        },
        [Key(top), Key(_), field] if top == "proxies" => match key(field) {
            Some(f) if PROXY_FIELDS.contains(&f) => Kind::Proxy,
            Some("noproxy") => Kind::Plain,
            _ => Kind::Secret,
        },
        _ => Kind::Secret,
    }
}

/// The user info of a proxy address, with or without a scheme: `http://u:p@proxy:3128` and
/// `u:p@proxy:3128` → the byte range of `p`; `token@proxy` → the range of `token` (a user
/// alone may be a token). The last `@` ends it, so a password holding `@` or `/` is covered.
fn proxy_secret(s: &str) -> Option<(usize, usize)> {
    let start = s.find("://").map(|i| i + 3).unwrap_or(0);
    let at = start + s[start..].rfind('@')?;
    let userinfo = &s[start..at];
    let (a, b) = match userinfo.find(':') {
        Some(colon) => (start + colon + 1, at),
        None => (start, at),
    };
    (b > a).then_some((a, b))
}

/// Register `secret` and what it is made of: its words, and the password inside a base64
/// `user:password` (an `auth` field, a `Basic …` header).
fn register(secret: &str, redactor: &Redactor) {
    // a boolean or null spelled as a string is no secret, and registering it would mask the
    // report's own `true`/`false`
    if ["true", "false", "null"].contains(&secret.trim().to_ascii_lowercase().as_str()) {
        return;
    }
    redactor.add(secret);
    redactor.add(secret.trim());
    for word in secret.split_whitespace() {
        if word.len() >= 8 {
            redactor.add(word);
        }
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(word) {
            if let Ok(dec) = String::from_utf8(bytes) {
                if let Some((_, pass)) = dec.split_once(':') {
                    redactor.add(&dec);
                    redactor.add(pass);
                }
            }
        }
    }
}

fn mask_at(v: &mut Value, path: &mut Vec<Seg>, redactor: &Redactor) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                path.push(Seg::Key(k.to_ascii_lowercase()));
                mask_at(child, path, redactor);
                path.pop();
            }
        }
        Value::Array(items) => {
            for item in items {
                path.push(Seg::Item);
                mask_at(item, path, redactor);
                path.pop();
            }
        }
        Value::String(s) => match classify(path) {
            Kind::Plain => {}
            Kind::Secret => {
                register(s, redactor);
                *s = MASK.to_string();
            }
            Kind::Proxy => {
                if let Some((a, b)) = proxy_secret(s) {
                    register(&s[a..b], redactor);
                    s.replace_range(a..b, MASK);
                }
            }
        },
        // numbers and booleans: Docker's config has none that is a secret
        _ => {}
    }
}

/// Mask every secret of the config `v` in place and register each with `redactor`.
pub fn mask(v: &mut Value, redactor: &Redactor) {
    mask_at(v, &mut Vec::new(), redactor);
}

/// Register every secret of a config's text with `redactor`. Text that is not JSON (the CLI
/// would refuse it, but a check may still print it) has every quoted string that is not a key
/// registered: it cannot be read, so all of it is a secret.
pub fn register_secrets(text: &str, redactor: &Redactor) {
    match serde_json::from_str::<Value>(text) {
        Ok(mut v) => mask(&mut v, redactor),
        Err(_) => {
            for s in quoted_values(text) {
                register(&s, redactor);
            }
        }
    }
}

/// The contents of every `"…"` in `text` not followed by `:` (a key), escapes kept as written.
fn quoted_values(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut end = None;
        let mut escaped = false;
        for (j, d) in chars.by_ref() {
            match (escaped, d) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(j);
                    break;
                }
                _ => {}
            }
        }
        let Some(j) = end else {
            // an unterminated string: the rest of the text
            out.push(text[i + 1..].to_string());
            break;
        };
        let is_key = text[j + 1..].trim_start().starts_with(':');
        if !is_key {
            out.push(text[i + 1..j].to_string());
        }
    }
    out
}

/// The value of `key` in the object `v`, matched as Go's `encoding/json` matches a field:
/// case-insensitively. Two spellings of it in one object are an error (Docker would merge or
/// overwrite them; the gate does not guess which).
pub fn get_ci<'v>(v: &'v Value, key: &str) -> Result<Option<&'v Value>, String> {
    let Some(map) = v.as_object() else {
        return Ok(None);
    };
    let mut found: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(key))
        .collect();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop().map(|(_, v)| v)),
        _ => Err(format!(
            "the keys {} all mean `{key}` to Docker (it matches keys case-insensitively): ambiguous",
            found
                .iter()
                .map(|(k, _)| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// A string field of `v` read with [`get_ci`].
pub fn get_str_ci<'v>(v: &'v Value, key: &str) -> Result<Option<&'v str>, String> {
    Ok(get_ci(v, key)?.and_then(Value::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "canary-s3cr3t";

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    /// Expected by hand from Docker's `ConfigFile` (docker/cli `cli/config/configfile/file.go`):
    /// which paths hold no secret.
    #[test]
    fn classify_by_hand() {
        use Seg::*;
        let k = |s: &str| Key(s.into());
        let cases: &[(&[Seg], Kind)] = &[
            (&[k("psformat")], Kind::Plain),
            (&[k("credsstore")], Kind::Plain),
            (&[k("credsstore"), k("x")], Kind::Secret),
            (&[k("credhelpers"), k("gcr.io")], Kind::Plain),
            (&[k("credhelpers"), k("gcr.io"), k("x")], Kind::Secret),
            (&[k("prunefilters"), Item], Kind::Plain),
            (&[k("auths"), k("r"), k("username")], Kind::Plain),
            (&[k("auths"), k("r"), k("auth")], Kind::Secret),
            (&[k("auths"), k("r"), k("registrytoken")], Kind::Secret),
            (&[k("auths"), k("r"), k("somethingnew")], Kind::Secret),
            (&[k("auths"), k("r")], Kind::Secret),
            (&[k("httpheaders"), k("x-meta")], Kind::Secret),
            (&[k("proxies"), k("default"), k("httpproxy")], Kind::Proxy),
            (&[k("proxies"), k("default"), k("noproxy")], Kind::Plain),
            (&[k("proxies"), k("default"), k("other")], Kind::Secret),
            (&[k("plugins"), k("p"), k("token")], Kind::Secret),
            (&[k("unknownfield")], Kind::Secret),
        ];
        for (path, want) in cases {
            assert_eq!(classify(path), *want, "{path:?}");
        }
    }

    #[test]
    fn proxy_user_info_with_or_without_scheme() {
        let cases = [
            ("http://u:pw1@proxy:3128", Some("pw1")),
            ("u:pw2@proxy:3128", Some("pw2")),
            ("socks5://tok3n@proxy:1080", Some("tok3n")),
            ("http://u:p@ss/w@proxy:3128", Some("p@ss/w")),
            ("http://proxy:3128", None),
            ("proxy:3128", None),
        ];
        for (s, want) in cases {
            assert_eq!(proxy_secret(s).map(|(a, b)| &s[a..b]), want, "{s}");
        }
    }

    /// Every spelling of every secret field is masked and registered; what is known to be no
    /// secret stays readable.
    #[test]
    fn masks_by_default_in_any_spelling() {
        let text = format!(
            r#"{{"Auths":{{"https://index.docker.io/v1/":{{"Auth":"{a}","Username":"ccci"}},
                 "r.example":{{"PASSWORD":"{C}-p","IdentityToken":"{C}-i","RegistryToken":"{C}-r","email":"e@x"}}}},
               "httpHeaders":{{"X-Meta-Token":"{C}-h","Authorization":"Basic {basic}"}},
               "Proxies":{{"default":{{"HttpProxy":"http://pu:{C}-x@proxy:3128","HTTPSPROXY":"pu:{C}-y@proxy:3128","noProxy":"localhost"}}}},
               "CredHelpers":{{"gcr.io":"gcloud"}},"credsStore":"desktop","features":{{"buildkit":"true"}},
               "plugins":{{"p":{{"token":"{C}-g"}}}},"someFutureField":"{C}-f"}}"#,
            a = b64(&format!("ccci:{C}-a")),
            basic = b64(&format!("hu:{C}-b")),
        );
        let r = Redactor::new();
        let mut v: Value = serde_json::from_str(&text).unwrap();
        mask(&mut v, &r);
        let shown = v.to_string();
        assert!(!shown.contains(C), "{shown}");
        for keep in [
            "\"ccci\"",
            "e@x",
            "http://pu:[REDACTED]@proxy:3128",
            "pu:[REDACTED]@proxy:3128",
            "localhost",
            "gcloud",
            "desktop",
            "\"true\"",
            "X-Meta-Token",
            "r.example",
        ] {
            assert!(shown.contains(keep), "{keep} in {shown}");
        }
        for suffix in ["a", "p", "i", "r", "h", "b", "x", "y", "g", "f"] {
            let s = format!("{C}-{suffix}");
            assert_eq!(r.scrub(&format!("<{s}>")), format!("<{MASK}>"), "{suffix}");
        }
        // `true` was not registered: a report's booleans stay
        assert_eq!(r.scrub("true"), "true");
        // register_secrets registers the same set
        let r2 = Redactor::new();
        register_secrets(&text, &r2);
        assert_eq!(r2.scrub(&format!("{C}-y")), MASK);
    }

    #[test]
    fn text_that_is_not_json_has_every_quoted_value_registered() {
        let r = Redactor::new();
        register_secrets(
            &format!(r#"{{"auths": {{"r": {{"auth": "{C}-1", }} "x": "{C}-2" "#),
            &r,
        );
        assert_eq!(r.scrub(&format!("{C}-1 {C}-2")), format!("{MASK} {MASK}"));
        assert_eq!(r.scrub("auths"), "auths");
        assert_eq!(
            quoted_values(r#""k": "v\"w", "u"#),
            vec![r#"v\"w"#.to_string(), "u".to_string()]
        );
    }

    #[test]
    fn keys_match_case_insensitively_and_two_spellings_are_ambiguous() {
        let v: Value = serde_json::from_str(r#"{"Auths":{"r":{}}}"#).unwrap();
        assert!(get_ci(&v, "auths").unwrap().is_some());
        let v: Value = serde_json::from_str(r#"{"Auths":{},"auths":{}}"#).unwrap();
        let e = get_ci(&v, "auths").unwrap_err();
        assert!(e.contains("`Auths`") && e.contains("`auths`"), "{e}");
        assert_eq!(get_str_ci(&v, "credsstore").unwrap(), None);
    }
}
