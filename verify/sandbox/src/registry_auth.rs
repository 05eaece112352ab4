//! The sandbox's authenticated registry: a second `docker-registry` in the namespace, at
//! [`AUTH_REGISTRY_ADDR`], that refuses every request without a user of its htpasswd file.
//!
//! It stands in for what cc-ci's daemon authenticates to (Docker Hub with a personal access
//! token, `auths["https://index.docker.io/v1/"]`; no Docker Hub is reachable here): the host's
//! client config holds [`USER`]'s credential for it, and `auth.daemon-authenticated` asks the
//! daemon to log in with that credential (`POST /auth`), so a wrong password or a user removed
//! from the file (a revoked token) is refused by a real registry. The pull-through mirror at
//! [`crate::REGISTRY_ADDR`] stays anonymous, as Docker Hub serves public images: the fixture
//! push, the daemon's mirror pulls and every test that pulls are unchanged.
//!
//! The file is written at every start and put back by every `up` (the running sandbox's fast
//! path too) when it does not hold exactly the sandbox user with the sandbox secret, so a warm
//! sandbox and a cold one agree whatever a test left.

use std::path::Path;

use crate::error::{Result, SandboxError};

/// Address of the authenticated registry inside the sandbox's network namespace. 127.0.0.0/8
/// is an insecure registry to dockerd by default, so it is reached over plain HTTP.
pub const AUTH_REGISTRY_ADDR: &str = "127.0.0.1:5001";
/// The user the sandbox host's client config authenticates as (the gate spec's
/// `[targets.sandbox.params.auth] expected_user`).
pub const USER: &str = "ccci-sandbox";
/// The sandbox user's password: a sandbox-only secret, never a real one, and never printed
/// (the tests look for it in every report).
pub const SECRET: &str = "sandbox-not-a-real-secret";
/// The realm the registry names in its `WWW-Authenticate` challenge.
const REALM: &str = "ccci-sandbox";
/// bcrypt cost of the htpasswd entry: the registry accepts any cost, and the lowest keeps a
/// login (and the fast path's check) cheap on a loaded machine.
const COST: u32 = 4;

/// The registry's config: its own storage (it holds no image), htpasswd authentication.
pub(crate) fn config(store: &Path, htpasswd: &Path) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n\
         http:\n  addr: {AUTH_REGISTRY_ADDR}\n\
         auth:\n  htpasswd:\n    realm: {REALM}\n    path: {}\n",
        store.display(),
        htpasswd.display()
    )
}

/// One htpasswd line for `user` with `password` (bcrypt, as the registry requires).
pub fn htpasswd_line(user: &str, password: &str) -> Result<String> {
    let hash =
        bcrypt::hash(password, COST).map_err(|e| SandboxError::Config(format!("bcrypt: {e}")))?;
    Ok(format!("{user}:{hash}\n"))
}

/// `true` when `text` holds exactly one entry, [`USER`]'s, and it verifies [`SECRET`].
fn is_sandbox_file(text: &str) -> bool {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    match lines.as_slice() {
        [line] => line
            .split_once(':')
            .is_some_and(|(u, h)| u == USER && bcrypt::verify(SECRET, h.trim()).unwrap_or(false)),
        _ => false,
    }
}

/// Write the sandbox's htpasswd file unless it already is the sandbox's (atomically: the
/// registry re-reads the file when its modification time changes).
pub(crate) fn ensure_htpasswd(path: &Path) -> Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|t| is_sandbox_file(&t)) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, htpasswd_line(USER, SECRET)?)
        .map_err(|e| SandboxError::io("htpasswd", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| SandboxError::io("htpasswd", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_recognised_and_put_back() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("htpasswd");
        ensure_htpasswd(&f).unwrap();
        let first = std::fs::read_to_string(&f).unwrap();
        assert!(first.starts_with("ccci-sandbox:$2"), "{first}");
        assert!(is_sandbox_file(&first));
        // an intact file is left as it is (same salt)
        ensure_htpasswd(&f).unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), first);
        // a revoked user, a changed password, an extra user: each is put back
        for wrong in [
            htpasswd_line("someone-else", SECRET).unwrap(),
            htpasswd_line(USER, "another-password").unwrap(),
            format!("{first}{}", htpasswd_line("extra", "x").unwrap()),
            String::new(),
        ] {
            std::fs::write(&f, &wrong).unwrap();
            assert!(!is_sandbox_file(&wrong), "{wrong}");
            ensure_htpasswd(&f).unwrap();
            assert!(is_sandbox_file(&std::fs::read_to_string(&f).unwrap()));
        }
    }

    #[test]
    fn config_asks_for_htpasswd() {
        let c = config(Path::new("/s/auth-registry"), Path::new("/s/htpasswd"));
        assert!(c.contains("addr: 127.0.0.1:5001"), "{c}");
        assert!(
            c.contains("auth:\n  htpasswd:\n    realm: ccci-sandbox\n    path: /s/htpasswd\n"),
            "{c}"
        );
    }
}
