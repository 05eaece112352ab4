//! `ccci-verify sandbox up|down|status`.

use crate::CliError;
use anyhow::anyhow;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Which host shape the sandbox models; each shape is its own sandbox (see docs/sandbox.md).
/// Unset flags come from CCCI_SANDBOX_FLAVOUR, CCCI_SANDBOX_ENGINE, CCCI_SANDBOX_IMAGE_STORE.
#[derive(Args, Debug, Clone, Default)]
pub struct ShapeArgs {
    /// debian (units in /etc/systemd/system) or nixos (units linked from /nix/store)
    #[arg(long, value_name = "debian|nixos")]
    pub flavour: Option<ccci_sandbox::Flavour>,
    /// bookworm (the machine's docker.io 20.10), trixie (26.1), sid (the newest), or a
    /// directory holding dockerd and containerd
    #[arg(long, value_name = "bookworm|trixie|sid|PATH")]
    pub engine: Option<ccci_sandbox::Engine>,
    /// legacy (graph-driver store) or containerd (containerd image store)
    #[arg(long, value_name = "legacy|containerd")]
    pub image_store: Option<ccci_sandbox::ImageStore>,
}

impl ShapeArgs {
    /// The sandbox these flags (over the environment) name.
    fn config(&self) -> Result<ccci_sandbox::SandboxConfig, CliError> {
        if self.flavour.is_none() && self.engine.is_none() && self.image_store.is_none() {
            return crate::target::sandbox_config(None);
        }
        let env = ccci_sandbox::Shape::from_env().map_err(|e| CliError::Usage(anyhow!(e)))?;
        crate::target::sandbox_config(Some(ccci_sandbox::Shape {
            flavour: self.flavour.unwrap_or(env.flavour),
            engine: self.engine.clone().unwrap_or(env.engine),
            image_store: self.image_store.unwrap_or(env.image_store),
        }))
    }
}

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
        #[command(flatten)]
        shape: ShapeArgs,
    },
    /// Stop the sandbox and remove its processes, mounts, loop device, network namespace and
    /// containers (caches are kept unless --purge).
    Down {
        /// Also delete the caches (rootfs archive, registry storage).
        #[arg(long)]
        purge: bool,
        #[command(flatten)]
        shape: ShapeArgs,
    },
    /// Print how to reach the sandbox: DOCKER_HOST, registry, host container, data-root.
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        shape: ShapeArgs,
    },
}

fn print_info(info: &ccci_sandbox::SandboxInfo, json: bool) -> Result<(), CliError> {
    if json {
        let text = serde_json::to_string_pretty(&serde_json::json!({
            "running": true,
            "name": info.name,
            "docker_host": info.docker_host,
            "registry": info.registry,
            "auth_registry": info.auth_registry,
            "host_container": info.host_container,
            "data_root": info.data_root,
            "netns": info.netns,
            "registry_log": info.registry_log,
            "dockerd_log": info.dockerd_log,
            "state_dir": info.state_dir,
            "flavour": info.shape.flavour,
            "engine": info.shape.engine.to_string(),
            "image_store": info.shape.image_store,
            "engine_version": info.engine_version,
            "api_version": info.api_version,
        }))
        .map_err(|e| CliError::Runtime(anyhow!("{e}")))?;
        println!("{text}");
    } else {
        println!("sandbox {} is running", info.name);
        println!(
            "shape: {} (dockerd {}, API {})",
            info.shape,
            if info.engine_version.is_empty() {
                "?"
            } else {
                &info.engine_version
            },
            if info.api_version.is_empty() {
                "?"
            } else {
                &info.api_version
            }
        );
        println!("DOCKER_HOST={}", info.docker_host);
        println!(
            "registry={} (inside network namespace {})",
            info.registry, info.netns
        );
        println!(
            "authenticated registry={} (htpasswd {})",
            info.auth_registry,
            info.htpasswd.display()
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
    match action {
        Action::Up { repo, json, shape } => {
            let cfg = shape.config()?;
            let t0 = std::time::Instant::now();
            let info = crate::target::sandbox_up(&repo, cfg).await?;
            if !json {
                eprintln!(
                    "ccci-verify: sandbox up in {:.1}s",
                    t0.elapsed().as_secs_f64()
                );
            }
            print_info(&info, json)?;
            Ok(0)
        }
        Action::Down { purge, shape } => {
            let cfg = shape.config()?;
            ccci_sandbox::down_with(&cfg, purge)
                .await
                .map_err(|e| CliError::Runtime(anyhow!("sandbox down: {e}")))?;
            println!("sandbox {} is down", cfg.name);
            Ok(0)
        }
        Action::Status { json, shape } => {
            let cfg = shape.config()?;
            status(&cfg, json).await
        }
    }
}

async fn status(cfg: &ccci_sandbox::SandboxConfig, json: bool) -> Result<u8, CliError> {
    match ccci_sandbox::status(cfg)
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
    }
}
