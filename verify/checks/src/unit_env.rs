//! A service's environment as systemd builds it for its commands, and the `$VAR`/`${VAR}`
//! substitution systemd does on a command line. A shared leaf: it decides no verdict.
//!
//! Static, from the unit only: `Environment=` (as `systemctl show` prints it, drop-ins
//! applied) and every `EnvironmentFile=` read on the target (later files override earlier ones
//! and `Environment=`, as systemd documents). A variable the unit does not set may still come
//! from the manager or from systemd itself (`$MAINPID`, `$TRIGGER_UNIT`, …): a command line
//! that names one cannot be resolved statically, and says so.

use crate::Ctx;
use ccci_core::{Evidence, Halt, Trail};
use std::collections::BTreeMap;

/// The properties read.
pub const ENV_PROPERTIES: &str = "Environment,EnvironmentFiles,UnsetEnvironment,PassEnvironment";

/// What the unit sets, in the order systemd applies it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitEnv {
    /// `Environment=` assignments, `K=V` as shown.
    pub environment: Vec<String>,
    /// `EnvironmentFile=` paths, `-` prefixed when a missing file is ignored.
    pub files: Vec<String>,
    /// Every variable set statically (Environment=, then the files).
    pub vars: BTreeMap<String, String>,
    /// `PassEnvironment=` and `UnsetEnvironment=` words, as shown.
    pub pass: Vec<String>,
    pub unset: Vec<String>,
}

/// Split a `systemctl show` list value (`A=1 "B=x y"`) into words: double and single quotes,
/// backslash escapes.
pub fn split_words(value: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = value.trim().chars();
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
                            cur.push(e);
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
    words
}

/// An environment file as systemd reads it: `KEY=VALUE` lines, `#`/`;` comments, a value in
/// single or double quotes unquoted, a trailing `\` continuing the line. Lines without `=`
/// are ignored (systemd logs and skips them).
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = format!("{pending}{raw}");
        if let Some(cont) = line.strip_suffix('\\') {
            pending = cont.to_string();
            continue;
        }
        pending.clear();
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        let Some((k, v)) = t.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            split_words(v).join(" ")
        } else {
            v.to_string()
        };
        out.push((k.trim().to_string(), v));
    }
    out
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// A command line's argv as systemd runs it: a word that is exactly `$NAME` becomes the
/// variable's value split at whitespace (zero or more words), `${NAME}` anywhere in a word is
/// replaced by the value as it is, `$$` is a `$`. A variable the unit does not set is an error
/// naming it: it expands from the manager or from systemd itself, which a static read cannot
/// prove.
pub fn expand_argv(
    argv: &[String],
    vars: &BTreeMap<String, String>,
) -> Result<Vec<String>, String> {
    let lookup = |name: &str| {
        vars.get(name).cloned().ok_or_else(|| {
            format!("`${name}` is not set by the unit's Environment= or EnvironmentFile=, so what systemd passes cannot be proven")
        })
    };
    let mut out = Vec::new();
    for w in argv {
        if let Some(name) = w.strip_prefix('$') {
            if !name.is_empty() && name.chars().all(is_name_char) {
                out.extend(lookup(name)?.split_whitespace().map(String::from));
                continue;
            }
        }
        let mut s = String::new();
        let mut rest = w.as_str();
        while let Some(i) = rest.find('$') {
            s.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(r) = after.strip_prefix('$') {
                s.push('$');
                rest = r;
            } else if let Some(r) = after.strip_prefix('{') {
                let Some(end) = r.find('}') else {
                    return Err(format!("`{w}` has an unclosed `${{`"));
                };
                s.push_str(&lookup(&r[..end])?);
                rest = &r[end + 1..];
            } else {
                s.push('$');
                rest = after;
            }
        }
        s.push_str(rest);
        out.push(s);
    }
    Ok(out)
}

/// A variable whose name says it holds a secret (`…TOKEN`, `…PASSWORD`, `…_KEY`, …).
pub fn secret_name(k: &str) -> bool {
    let k = k.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASS", "KEY", "AUTH", "CRED"]
        .iter()
        .any(|w| k.contains(w))
}

/// `K=V` for evidence: the value of a secret-looking name registered with the run's redactor
/// and masked.
pub fn shown(ctx: &Ctx, k: &str, v: &str) -> String {
    if secret_name(k) {
        ctx.redactor.add(v);
        format!("{k}={}", ccci_core::redact::MASK)
    } else {
        format!("{k}={v}")
    }
}

/// Read the service's environment on the target: `systemctl show` of [`ENV_PROPERTIES`], then
/// each environment file. A required file that cannot be read is an error (systemd would not
/// start the unit; the gate does not guess what it holds).
pub async fn read(ctx: &Ctx, t: &mut Trail, service: &str) -> Result<UnitEnv, Halt> {
    let out = ctx
        .cmd(
            t,
            &["systemctl", "show", "-p", ENV_PROPERTIES, "--", service],
        )
        .await?;
    if !out.ok() {
        return Err(Halt::error(format!(
            "`systemctl show -p {ENV_PROPERTIES}` exited {}",
            out.status
        )));
    }
    let mut env = UnitEnv::default();
    for line in out.stdout_str().lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "Environment" => env.environment.extend(split_words(v)),
            "EnvironmentFiles" => {
                // `/etc/x (ignore_errors=no)`
                let (path, flags) = v.rsplit_once(" (").unwrap_or((v, ""));
                let optional = flags.contains("ignore_errors=yes");
                if !path.trim().is_empty() {
                    env.files.push(format!(
                        "{}{}",
                        if optional { "-" } else { "" },
                        path.trim()
                    ));
                }
            }
            "UnsetEnvironment" => env.unset.extend(split_words(v)),
            "PassEnvironment" => env.pass.extend(split_words(v)),
            _ => {}
        }
    }
    for a in &env.environment {
        if let Some((k, v)) = a.split_once('=') {
            env.vars.insert(k.to_string(), v.to_string());
        }
    }
    for f in env.files.clone() {
        let (path, optional) = match f.strip_prefix('-') {
            Some(p) => (p.to_string(), true),
            None => (f.clone(), false),
        };
        match ctx.target.read_file(&path).await {
            Ok(Some(bytes)) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let pairs = parse_env_file(&text);
                // the values may be secrets: the evidence names what the file sets, and shows
                // only values that are no secret by name
                t.push(Evidence::new(
                    format!("cat -- {path}   # values of secret-looking names hidden"),
                    Some(0),
                    pairs
                        .iter()
                        .map(|(k, v)| shown(ctx, k, v))
                        .collect::<Vec<_>>()
                        .join("\n"),
                ));
                for (k, v) in pairs {
                    env.vars.insert(k, v);
                }
            }
            Ok(None) if optional => {
                t.note(format!("EnvironmentFile=-{path}"), "missing, ignored as systemd does");
            }
            Ok(None) => {
                return Err(Halt::error(format!(
                    "the environment file {path} of {service} does not exist: systemd would not start the unit, and what it would hold cannot be read"
                )))
            }
            Err(e) => {
                return Err(Halt::error(format!(
                    "cannot read the environment file {path} of {service}: {e}"
                )))
            }
        }
    }
    for u in &env.unset {
        // `UnsetEnvironment=VAR` or `VAR=value` (only that assignment)
        match u.split_once('=') {
            Some((k, v)) if env.vars.get(k).is_some_and(|x| x == v) => {
                env.vars.remove(k);
            }
            Some(_) => {}
            None => {
                env.vars.remove(u);
            }
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// Expected by hand from systemd.service(5), "Command lines".
    #[test]
    fn substitution_as_systemd_documents_it() {
        let vars: BTreeMap<String, String> = [
            ("F", "--all --volumes"),
            ("H", "unix:///run/other.sock"),
            ("E", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            expand_argv(&s(&["/p", "$F", "x"]), &vars).unwrap(),
            s(&["/p", "--all", "--volumes", "x"])
        );
        assert_eq!(
            expand_argv(&s(&["/p", "${F}"]), &vars).unwrap(),
            s(&["/p", "--all --volumes"])
        );
        assert_eq!(
            expand_argv(&s(&["/p", "--docker-host=${H}", "$E"]), &vars).unwrap(),
            s(&["/p", "--docker-host=unix:///run/other.sock"])
        );
        assert_eq!(
            expand_argv(&s(&["/p", "^x$$", "a$F"]), &vars).unwrap(),
            s(&["/p", "^x$", "a$F"])
        );
        let e = expand_argv(&s(&["/p", "$NOPE"]), &vars).unwrap_err();
        assert!(e.contains("`$NOPE`"), "{e}");
        assert!(expand_argv(&s(&["/p", "${NOPE}"]), &vars).is_err());
        assert!(expand_argv(&s(&["/p", "${F"]), &vars).is_err());
    }

    #[test]
    fn environment_files_and_show_values() {
        assert_eq!(
            parse_env_file("# c\nA=1\nB=\"x y\"\n C = 'z'\nnot an assignment\nD=a\\\nb\n"),
            vec![
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "x y".to_string()),
                ("C".to_string(), "z".to_string()),
                ("D".to_string(), "ab".to_string()),
            ]
        );
        assert_eq!(
            split_words(r#"PRUNE_FLAGS=--all "B=x y""#),
            s(&["PRUNE_FLAGS=--all", "B=x y"])
        );
    }
}
