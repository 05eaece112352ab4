//! `ccci-verify sandbox up|down|status`.

use crate::CliError;
use anyhow::anyhow;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum Action {
    /// Start the sandbox (idempotent; recovers a crashed one) and deploy the prune units,
    /// binary and the repository's nix/ tree into its systemd host.
    Up {
        /// The repository whose nix/ tree is deployed as the host's source.
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop the sandbox and remove its processes, mounts, loop device, network namespace and
    /// containers (caches are kept unless --purge).
    Down {
        /// Also delete the caches (rootfs archive, registry storage).
        #[arg(long)]
        purge: bool,
    },
    /// Print how to reach the sandbox: DOCKER_HOST, registry, host container, data-root.
    Status {
        #[arg(long)]
        json: bool,
    },
}

fn print_info(info: &ccci_sandbox::SandboxInfo, json: bool) -> Result<(), CliError> {
    if json {
        let text = serde_json::to_string_pretty(&serde_json::json!({
            "running": true,
            "name": info.name,
            "docker_host": info.docker_host,
            "registry": info.registry,
            "host_container": info.host_container,
            "data_root": info.data_root,
            "netns": info.netns,
            "registry_log": info.registry_log,
            "dockerd_log": info.dockerd_log,
            "state_dir": info.state_dir,
        }))
        .map_err(|e| CliError::Runtime(anyhow!("{e}")))?;
        println!("{text}");
    } else {
        println!("sandbox {} is running", info.name);
        println!("DOCKER_HOST={}", info.docker_host);
        println!(
            "registry={} (inside network namespace {})",
            info.registry, info.netns
        );
        println!("host container={}", info.host_container);
        println!("data-root={}", info.data_root.display());
        println!(
            "logs: {} {}",
            info.dockerd_log.display(),
            info.registry_log.display()
        );
    }
    Ok(())
}

pub async fn run(action: Action) -> Result<u8, CliError> {
    let cfg = ccci_sandbox::SandboxConfig::from_env();
    match action {
        Action::Up { repo, json } => {
            let t0 = std::time::Instant::now();
            let info = crate::target::sandbox_up(&repo).await?;
            if !json {
                eprintln!(
                    "ccci-verify: sandbox up in {:.1}s",
                    t0.elapsed().as_secs_f64()
                );
            }
            print_info(&info, json)?;
            Ok(0)
        }
        Action::Down { purge } => {
            ccci_sandbox::down_with(&cfg, purge)
                .await
                .map_err(|e| CliError::Runtime(anyhow!("sandbox down: {e}")))?;
            println!("sandbox {} is down", cfg.name);
            Ok(0)
        }
        Action::Status { json } => match ccci_sandbox::status(&cfg)
            .await
            .map_err(|e| CliError::Runtime(anyhow!("sandbox status: {e}")))?
        {
            Some(info) => {
                print_info(&info, json)?;
                Ok(0)
            }
            None => {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"running": false, "name": cfg.name})
                    );
                } else {
                    println!(
                        "sandbox {} is not running (start it with `ccci-verify sandbox up`)",
                        cfg.name
                    );
                }
                Ok(3)
            }
        },
    }
}
