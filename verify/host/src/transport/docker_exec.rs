use super::{display_argv, CmdOutput, Transport};
use crate::HostError;
use async_trait::async_trait;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::Docker;
use futures_util::StreamExt;

/// Commands inside a running container (`docker://NAME`, and the sandbox's systemd host),
/// through the Docker API's exec endpoint.
#[derive(Debug, Clone)]
pub struct DockerExec {
    pub docker: Docker,
    pub container: String,
    pub label: String,
}

#[async_trait]
impl Transport for DockerExec {
    fn describe(&self) -> String {
        self.label.clone()
    }

    async fn exec(&self, argv: &[String]) -> Result<CmdOutput, HostError> {
        let err = |reason: String| HostError::Exec {
            target: self.label.clone(),
            command: display_argv(argv),
            reason,
        };
        if argv.is_empty() {
            return Err(err("empty command".into()));
        }
        let created = self
            .docker
            .create_exec(
                &self.container,
                CreateExecOptions {
                    cmd: Some(argv.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                let reason = e.to_string();
                // 404: no such container; 409: it is not running (or paused)
                if crate::docker_error::is_not_found(&e) || crate::docker_error::is_conflict(&e) {
                    HostError::Unreachable {
                        target: self.label.clone(),
                        reason,
                    }
                } else {
                    err(reason)
                }
            })?;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        match self
            .docker
            .start_exec(&created.id, None)
            .await
            .map_err(|e| err(e.to_string()))?
        {
            StartExecResults::Attached { mut output, .. } => {
                while let Some(chunk) = output.next().await {
                    match chunk.map_err(|e| err(e.to_string()))? {
                        bollard::container::LogOutput::StdOut { message } => {
                            stdout.extend_from_slice(&message)
                        }
                        bollard::container::LogOutput::StdErr { message } => {
                            stderr.extend_from_slice(&message)
                        }
                        _ => {}
                    }
                }
            }
            StartExecResults::Detached => return Err(err("exec detached unexpectedly".into())),
        }
        let inspect = self
            .docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| err(e.to_string()))?;
        let status = inspect.exit_code.map(|c| c as i32).unwrap_or(-1);
        // the exec API reports a missing binary as exit 126/127 with text on stdout
        Ok(CmdOutput {
            status,
            stdout,
            stderr,
        })
    }
}
