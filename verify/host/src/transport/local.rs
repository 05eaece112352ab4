use super::{display_argv, CmdOutput, Transport};
use crate::HostError;
use async_trait::async_trait;

/// Commands on this machine.
#[derive(Debug, Clone, Default)]
pub struct Local;

#[async_trait]
impl Transport for Local {
    fn describe(&self) -> String {
        "local".into()
    }

    async fn exec(&self, argv: &[String]) -> Result<CmdOutput, HostError> {
        let (prog, args) = argv.split_first().ok_or_else(|| HostError::Exec {
            target: "local".into(),
            command: String::new(),
            reason: "empty command".into(),
        })?;
        let out = tokio::process::Command::new(prog)
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| HostError::Exec {
                target: "local".into(),
                command: display_argv(argv),
                reason: e.to_string(),
            })?;
        Ok(CmdOutput {
            status: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}
