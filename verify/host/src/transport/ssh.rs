use super::{display_argv, CmdOutput, Transport};
use crate::HostError;
use async_trait::async_trait;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Commands on a remote host over OpenSSH. Host-key checking stays on
/// (`StrictHostKeyChecking=yes`, `BatchMode=yes`: no prompt can hang a reviewer's run). Extra
/// options (an identity, a known_hosts file) come from `CCCI_SSH_OPTS`, split like a shell.
///
/// argv is quoted once, here, for the remote shell: a unit or image name cannot inject a command.
#[derive(Debug, Clone)]
pub struct Ssh {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub extra: Vec<String>,
}

impl Ssh {
    pub fn label(&self) -> String {
        let mut s = "ssh://".to_string();
        if let Some(u) = &self.user {
            s.push_str(u);
            s.push('@');
        }
        s.push_str(&self.host);
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        s
    }

    /// The options every ssh invocation gets.
    pub fn base_args(&self) -> Vec<String> {
        let mut a: Vec<String> = [
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(p) = self.port {
            a.push("-p".into());
            a.push(p.to_string());
        }
        if let Some(u) = &self.user {
            a.push("-l".into());
            a.push(u.clone());
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// The local ssh argv that runs `argv` remotely (exposed for tests of the quoting).
    pub fn command_line(&self, argv: &[String]) -> Vec<String> {
        let mut a = vec!["ssh".to_string()];
        a.extend(self.base_args());
        a.push("--".into());
        a.push(self.host.clone());
        a.push(shell_words::join(argv));
        a
    }
}

#[async_trait]
impl Transport for Ssh {
    fn describe(&self) -> String {
        self.label()
    }

    async fn exec(&self, argv: &[String]) -> Result<CmdOutput, HostError> {
        if argv.is_empty() {
            return Err(HostError::Exec {
                target: self.label(),
                command: String::new(),
                reason: "empty command".into(),
            });
        }
        let line = self.command_line(argv);
        let out = tokio::process::Command::new(&line[0])
            .args(&line[1..])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| HostError::Unreachable {
                target: self.label(),
                reason: format!("cannot start ssh: {e}"),
            })?;
        let status = out.status.code().unwrap_or(-1);
        // 255 is ssh's own failure (connection, host key, auth), not the remote command's
        if status == 255 {
            return Err(HostError::Unreachable {
                target: self.label(),
                reason: format!(
                    "ssh failed running `{}`: {}",
                    display_argv(argv),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(CmdOutput {
            status,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}

/// A local unix socket forwarded to the remote Docker socket (`ssh -L`), alive while this
/// value lives.
#[derive(Debug)]
pub struct SshForward {
    child: tokio::process::Child,
    dir: PathBuf,
    pub socket: PathBuf,
}

impl SshForward {
    pub async fn open(ssh: &Ssh, remote_socket: &str) -> Result<SshForward, HostError> {
        let unreachable = |reason: String| HostError::Unreachable {
            target: ssh.label(),
            reason,
        };
        // one private directory per forward: several targets in one process (tests) must not
        // share, and so remove, each other's socket
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ccci-ssh-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(|e| unreachable(format!("cannot create {}: {e}", dir.display())))?;
        }
        let socket = dir.join("docker.sock");
        let _ = std::fs::remove_file(&socket);
        let mut args = vec!["-nNT".to_string()];
        args.extend(ssh.base_args());
        args.extend([
            "-o".into(),
            "ExitOnForwardFailure=yes".into(),
            "-o".into(),
            "StreamLocalBindUnlink=yes".into(),
            "-L".into(),
            format!("{}:{}", socket.display(), remote_socket),
            "--".into(),
            ssh.host.clone(),
        ]);
        let mut child = tokio::process::Command::new("ssh")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| unreachable(format!("cannot start ssh: {e}")))?;
        for _ in 0..100 {
            if Path::new(&socket).exists() {
                return Ok(SshForward { child, dir, socket });
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = e.read_to_string(&mut err).await;
                }
                return Err(unreachable(format!(
                    "ssh forward of {remote_socket} exited ({status}): {}",
                    err.trim()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(unreachable(format!(
            "ssh forward of {remote_socket} did not come up within 10s"
        )))
    }
}

impl Drop for SshForward {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_quoted_once_for_the_remote_shell() {
        let ssh = Ssh {
            user: Some("root".into()),
            host: "cc-ci".into(),
            port: Some(2222),
            extra: vec![],
        };
        let evil = vec![
            "systemctl".to_string(),
            "show".into(),
            "x.timer; touch /tmp/pwned".into(),
            "$(id)".into(),
        ];
        let line = ssh.command_line(&evil);
        let remote = line.last().unwrap();
        // the remote shell splits it back into exactly the original words
        assert_eq!(shell_words::split(remote).unwrap(), evil);
        assert!(line.contains(&"StrictHostKeyChecking=yes".to_string()));
        assert!(line.contains(&"BatchMode=yes".to_string()));
        assert_eq!(ssh.label(), "ssh://root@cc-ci:2222");
    }
}
