//! The typed parameters of gate 2pc's checks, read from the gate spec's `[params]` (after the
//! per-target overrides are merged). Unknown keys are an error: a typo in a spec must not
//! silently fall back to a default.

use serde::{Deserialize, Serialize};

fn d_legacy_timer() -> String {
    "docker-prune.timer".into()
}
fn d_prune_service() -> String {
    "ci-docker-prune.service".into()
}
fn d_prune_timer() -> String {
    "ci-docker-prune.timer".into()
}
fn d_threshold() -> u8 {
    80
}
fn d_keep_line() -> String {
    "keeping local image cache".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The legacy timer that must be gone (NixOS's `virtualisation.docker.autoPrune` timer).
    #[serde(default = "d_legacy_timer")]
    pub legacy_timer: String,
    /// Other legacy unit names of the family (never expected on the host as active units).
    #[serde(default)]
    pub legacy_units: Vec<String>,
    #[serde(default = "d_prune_service")]
    pub prune_service: String,
    #[serde(default = "d_prune_timer")]
    pub prune_timer: String,
    /// The disk threshold the deployed prune is expected to use.
    #[serde(default = "d_threshold")]
    pub threshold: u8,
    /// Text of the prune's log line when it keeps the cache.
    #[serde(default = "d_keep_line")]
    pub keep_line: String,
    #[serde(default)]
    pub probe: ProbeParams,
    #[serde(default)]
    pub auth: AuthParams,
    #[serde(default)]
    pub store: StoreParams,
    #[serde(default)]
    pub repro: ReproParams,
}

impl Default for Params {
    fn default() -> Self {
        // an empty table takes every default
        toml::Table::new()
            .try_into()
            .unwrap_or_else(|e| panic!("defaults of Params must deserialize: {e}"))
    }
}

fn d_image() -> String {
    "redis:7-alpine".into()
}
fn d_converge() -> u64 {
    90
}
fn d_budget() -> u64 {
    200
}
fn d_deploy() -> Vec<Vec<String>> {
    vec![[
        "docker",
        "stack",
        "deploy",
        "--compose-file",
        "{compose}",
        "{stack}",
    ]
    .map(String::from)
    .to_vec()]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeParams {
    /// The image a CI deploy uses; deployed by digest like `docker service create` does.
    #[serde(default = "d_image")]
    pub image: String,
    /// How long a probe service may take to converge.
    #[serde(default = "d_converge")]
    pub converge_secs: u64,
    /// The whole probe's time: every wait is bounded by what is left of it, and its clean-up
    /// gets `CLEANUP_SECS` (30 s) more. Keep the first probe check's `timeout_secs` above the
    /// sum, or the probe is cancelled (and cleaned up) before it finishes.
    #[serde(default = "d_budget")]
    pub budget_secs: u64,
    /// The host's own CI teardown: argv run on the host, in order, to tear the probe's stack
    /// down the way CI does (e.g. `[["docker", "stack", "rm", "{stack}"]]`). Given, the probe
    /// also deploys the way CI does ([`Self::deploy`]); empty (the default), the verifier
    /// deploys and tears down through the API (service, volume, secret; never an image).
    /// `{stack}`, `{service}`, `{compose}`, `{image}` and `{image_id}` are substituted.
    #[serde(default)]
    pub teardown: Vec<Vec<String>>,
    /// The host's own CI deploy, used (for the deploy and the redeploy) when
    /// [`Self::teardown`] is given: default `docker stack deploy --compose-file {compose}
    /// {stack}`, the compose file being the probe's (image pinned by digest, a volume, a
    /// secret) written on the host. Same substitutions.
    #[serde(default = "d_deploy")]
    pub deploy: Vec<Vec<String>>,
    /// Extra argv the host's own CI teardown runs after removing services, volumes and secrets
    /// (e.g. your teardown script). `{service}` and `{image_id}` are substituted.
    #[serde(default)]
    pub teardown_extra: Vec<Vec<String>>,
    /// argv run on the host between the teardown and the redeploy (what may happen between
    /// two CI runs). Same substitutions.
    #[serde(default)]
    pub before_redeploy: Vec<Vec<String>>,
}

impl Default for ProbeParams {
    fn default() -> Self {
        ProbeParams {
            image: d_image(),
            converge_secs: d_converge(),
            budget_secs: d_budget(),
            teardown: vec![],
            deploy: d_deploy(),
            teardown_extra: vec![],
            before_redeploy: vec![],
        }
    }
}

fn d_config_path() -> String {
    "/root/.docker/config.json".into()
}
fn d_registry() -> String {
    "https://index.docker.io/v1/".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthParams {
    /// The Docker Hub user the daemon's pulls must be authenticated as. Required for
    /// `auth.daemon-authenticated`.
    #[serde(default)]
    pub expected_user: Option<String>,
    /// The daemon user's client config holding the credential.
    #[serde(default = "d_config_path")]
    pub config_path: String,
    /// The registry key in `auths`.
    #[serde(default = "d_registry")]
    pub registry: String,
    /// The user the credential file must belong to: the daemon's (and the prune's) user.
    #[serde(default = "d_owner")]
    pub owner: String,
}

fn d_owner() -> String {
    "root".into()
}

impl Default for AuthParams {
    fn default() -> Self {
        AuthParams {
            expected_user: None,
            config_path: d_config_path(),
            registry: d_registry(),
            owner: d_owner(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreParams {
    /// The Docker root dir expected (`docker info`'s DockerRootDir); unset accepts any.
    #[serde(default)]
    pub docker_root: Option<String>,
}

fn d_module_files() -> Vec<String> {
    vec!["nix/modules/docker-prune.nix".into()]
}
fn d_deployed_tree() -> String {
    "/root/cc-ci".into()
}
fn d_families() -> Vec<String> {
    vec!["docker-prune".into()]
}
fn d_docs() -> Vec<String> {
    vec!["docs".into(), "README.md".into()]
}
fn d_module_settings() -> String {
    r#"{"services":{"ci-docker-prune":{"enable":true}}}"#.into()
}
fn d_portable_units() -> Vec<String> {
    vec![
        "prune/systemd/ci-docker-prune.service".into(),
        "prune/systemd/ci-docker-prune.timer".into(),
    ]
}
fn d_system_flake() -> String {
    ".".into()
}
fn d_current_system() -> String {
    "/run/current-system".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReproParams {
    /// Module files (relative to the repo) whose declared units the host must run.
    #[serde(default = "d_module_files")]
    pub module_files: Vec<String>,
    /// Where the host keeps the source it was deployed from.
    #[serde(default = "d_deployed_tree")]
    pub deployed_tree: String,
    /// Name stems of the unit family: any host unit whose name contains a stem is of the family.
    #[serde(default = "d_families")]
    pub families: Vec<String>,
    /// Docs and status files (files or directories, relative to the repo) whose `systemctl`
    /// commands must name declared units.
    #[serde(default = "d_docs")]
    pub docs: Vec<String>,
    /// Units the platform itself declares (on NixOS, the docker module's
    /// `docker-prune.service`): on a NixOS host they may exist, loaded and inert (triggered,
    /// wanted and required by nothing), even when they are legacy names.
    #[serde(default)]
    pub platform_units: Vec<String>,
    /// `repro.unit-config-git-eq-host` on NixOS: the option values the deploy gives the module
    /// (NixOS option values as JSON), evaluated with the module at REV.
    #[serde(default = "d_module_settings")]
    pub module_settings: String,
    /// `repro.unit-config-git-eq-host` elsewhere: the portable unit files at REV the host runs.
    #[serde(default = "d_portable_units")]
    pub portable_units: Vec<String>,
    /// `repro.system-git-eq-host`: the flake's directory in the repository (`.` = the root).
    #[serde(default = "d_system_flake")]
    pub system_flake: String,
    /// `repro.system-git-eq-host`: the flake attribute of the system toplevel, e.g.
    /// `nixosConfigurations.cc-ci.config.system.build.toplevel`.
    #[serde(default)]
    pub system_attr: Option<String>,
    /// `repro.system-git-eq-host`: the link to the system the host runs (default
    /// `/run/current-system`). A test that must not repoint the running system's link (a
    /// NixOS VM test whose driver reaches every tool through `/run/current-system/sw/bin`)
    /// names another link here.
    #[serde(default = "d_current_system")]
    pub current_system: String,
}

impl Default for ReproParams {
    fn default() -> Self {
        ReproParams {
            module_files: d_module_files(),
            deployed_tree: d_deployed_tree(),
            families: d_families(),
            docs: d_docs(),
            platform_units: vec![],
            module_settings: d_module_settings(),
            portable_units: d_portable_units(),
            system_flake: d_system_flake(),
            system_attr: None,
            current_system: d_current_system(),
        }
    }
}

impl Params {
    /// Read the params table of a gate spec.
    pub fn from_table(t: &toml::Table) -> Result<Params, String> {
        let p: Params = t
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| format!("invalid [params]: {e}"))?;
        if p.threshold > 100 {
            return Err(format!(
                "invalid [params]: threshold {} is not 0-100",
                p.threshold
            ));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let p = Params::default();
        assert_eq!(p.prune_timer, "ci-docker-prune.timer");
        assert_eq!(p.probe.image, "redis:7-alpine");
        // no host teardown by default: the verifier's own deploy and teardown, as before
        assert!(p.probe.teardown.is_empty());
        let t: toml::Table =
            toml::from_str("[probe]\nteardown = [['docker', 'stack', 'rm', '{stack}']]").unwrap();
        let p2 = Params::from_table(&t).unwrap();
        assert_eq!(p2.probe.teardown[0][2], "rm");
        assert_eq!(
            p2.probe.deploy[0].join(" "),
            "docker stack deploy --compose-file {compose} {stack}"
        );
        let t: toml::Table = toml::from_str("thresold = 70").unwrap();
        assert!(Params::from_table(&t).unwrap_err().contains("thresold"));
        let t: toml::Table = toml::from_str("threshold = 170").unwrap();
        assert!(Params::from_table(&t).is_err());
        let t: toml::Table = toml::from_str("[auth]\nexpected_user = 'nptest2'").unwrap();
        assert_eq!(
            Params::from_table(&t)
                .unwrap()
                .auth
                .expected_user
                .as_deref(),
            Some("nptest2")
        );
    }
}
