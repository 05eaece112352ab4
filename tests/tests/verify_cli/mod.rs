//! Shared by the `ccci-verify` command-line tests (`cli_verify`, `transport_ssh`,
//! `transport_docker`): where the binary is, a clean command for it, and the secret that must
//! never appear in any output.
#![allow(dead_code)]

/// The sandbox host's registry secret (see `ccci_sandbox::Deploy::sandbox_docker_config`): no
/// output of any format may carry it.
pub const SANDBOX_SECRET: &str = "sandbox-not-a-real-secret";
/// The same secret as the config file holds it: base64 of `ccci-sandbox:<secret>`.
pub const SANDBOX_AUTH_BLOB: &str = "Y2NjaS1zYW5kYm94OnNhbmRib3gtbm90LWEtcmVhbC1zZWNyZXQ=";

/// Panics when `text` (named `what`) carries the sandbox secret in either form.
pub fn assert_no_secret(what: &str, text: &str) {
    for s in [SANDBOX_SECRET, SANDBOX_AUTH_BLOB] {
        assert!(
            !text.contains(s),
            "{what} carries the sandbox's registry secret"
        );
    }
}

pub use ccci_tests::bins::verify_bin;

/// `ccci-verify` run from the workspace root (so `--repo .` is this repository) with an
/// environment free of the variables that would change its target.
pub fn verify() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(verify_bin());
    c.current_dir(ccci_tests::workspace_root());
    for var in [
        "DOCKER_HOST",
        "CCCI_TARGET",
        "CCCI_SSH_OPTS",
        "CCCI_SSH_DOCKER_SOCKET",
    ] {
        c.env_remove(var);
    }
    c.timeout(std::time::Duration::from_secs(600));
    c
}

/// What a finished command printed, both streams.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// For failure messages.
    pub fn show(&self) -> String {
        format!(
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Run the command and collect its output (no assertion on the exit code).
pub fn run(cmd: &mut assert_cmd::Command) -> Run {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run ccci-verify: {e}"));
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_no_secret("ccci-verify's stdout", &run.stdout);
    assert_no_secret("ccci-verify's stderr", &run.stderr);
    run
}
