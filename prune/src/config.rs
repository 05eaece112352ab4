//! Typed configuration: the flags of the contract, the same keys in a TOML file, and validation.
//!
//! Precedence: command-line flag > `--config` file > `DOCKER_HOST` (docker host only) > default.
//! Every invalid value is reported with the value itself, so the CLI can exit 2 naming it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

/// Default disk-usage threshold in percent.
pub const DEFAULT_THRESHOLD: u8 = 80;
/// Default age below which nothing is removed.
pub const DEFAULT_UNTIL: &str = "24h";
/// Default pattern of a CI run stack's service names.
pub const DEFAULT_RUN_STACK_PATTERN: &str = r"^[a-z0-9]{1,4}-[0-9a-f]{6}_ci_commoninternet_net_";
/// Default span after which a gate closed under disk pressure is warned about.
pub const DEFAULT_GATE_STALL_WARN_AFTER: &str = "24h";
/// Docker's default socket.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";
/// Default low watermark of the eviction tier: it evicts down to this usage (percent).
pub const DEFAULT_LOW_WATERMARK: u8 = 70;
/// Default window of the eviction tier: the newest image of a repository deployed within it
/// is kept (days).
pub const DEFAULT_KEEP_RECENT_DAYS: u64 = 14;

/// Errors in flags or the config file: the CLI maps every one of them to exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid threshold '{0}': expected a whole percentage from 0 to 100")]
    Threshold(String),
    #[error("invalid duration '{value}' for until: {reason} (examples: 24h, 90m, 2days, 0s)")]
    Duration { value: String, reason: String },
    #[error("invalid run-stack pattern '{value}': {reason}")]
    Pattern { value: String, reason: String },
    #[error("invalid path '{0}': must be a non-empty absolute path")]
    Path(String),
    #[error("invalid path '{path}': {cause}")]
    PathMissing { path: String, cause: std::io::Error },
    #[error("invalid evict_low_watermark '{0}': expected a whole percentage from 0 to 100")]
    LowWatermark(String),
    #[error(
        "invalid evict_low_watermark {low}%: it must be below the threshold ({threshold}%) — the eviction tier starts at the threshold and evicts down to the low watermark (or set evict = false)"
    )]
    LowWatermarkNotBelowThreshold { low: u8, threshold: u8 },
    #[error(
        "invalid duration '{value}' for evict_keep_recent: {reason} (examples: 14d, 7days, 0s)"
    )]
    KeepRecent { value: String, reason: String },
    #[error(
        "invalid duration '{value}' for gate_stall_warn_after: {reason} (examples: 24h, 2days)"
    )]
    StallWarnAfter { value: String, reason: String },
    #[error("invalid duration '{value}' for evict_min_age: {reason} (examples: 24h, 0s)")]
    EvictMinAge { value: String, reason: String },
    #[error("invalid state_dir '{0}': must be an absolute path")]
    StateDir(String),
    #[error("invalid metrics_file '{0}': must be an absolute path to a file")]
    MetricsFile(String),
    #[error("invalid docker host '{0}': expected unix:///path/to/docker.sock or tcp://host:port")]
    DockerHost(String),
    #[error("cannot read config file {path}: {cause}")]
    ReadFile {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    ParseFile { path: PathBuf, message: String },
}

/// The raw settings, as they come from flags or from the TOML file (same keys).
/// Every field is optional so that a layer only overrides what it sets.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Disk usage (percent, 0-100) at or above which pruning may happen. TOML: integer or string.
    pub threshold: Option<Threshold>,
    /// Mount points whose usage is measured; the maximum counts.
    pub paths: Option<Vec<String>>,
    /// Only things older than this are removed (human duration: `24h`, `90m`, `0s`).
    pub until: Option<String>,
    /// Regex of service names of a live CI run stack.
    pub run_stack_pattern: Option<String>,
    /// Docker endpoint (`unix://...` or `tcp://...`).
    pub docker_host: Option<String>,
    /// Opt-in: also reclaim superseded cached pulls. Default false. Config file only.
    pub reclaim_superseded_pulls: Option<bool>,
    /// The eviction tier (default on): when usage is still at or above the threshold after
    /// the leftovers, evict unreferenced cached pulls, least recently used first.
    pub evict: Option<bool>,
    /// Evict down to this usage, percent (default 70). TOML: integer or string.
    pub evict_low_watermark: Option<Threshold>,
    /// The newest image of a repository deployed within this window is kept (default `14d`).
    pub evict_keep_recent: Option<String>,
    /// Where the usage state lives (default: `$STATE_DIRECTORY`, set by systemd's
    /// `StateDirectory=`; none: the run learns what it can and forgets it).
    pub state_dir: Option<String>,
    /// Warn when the disk has been over the threshold with `runs` or `converge` closed for
    /// this long (default `24h`; remembered in the state directory).
    pub gate_stall_warn_after: Option<String>,
    /// The eviction tier's age guard: an image seen used within it is not evicted (default:
    /// `until`). Config file only.
    pub evict_min_age: Option<String>,
    /// Where to write node_exporter textfile metrics after every run (`--metrics-file`; none:
    /// no metrics). Absolute.
    pub metrics_file: Option<String>,
}

impl Settings {
    /// Read a TOML config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::ReadFile {
            path: path.to_path_buf(),
            cause,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::ParseFile {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parse TOML text (same keys as the flags).
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))
    }

    /// `self` overridden by every field that `over` sets.
    pub fn overridden_by(self, over: Settings) -> Settings {
        Settings {
            threshold: over.threshold.or(self.threshold),
            paths: over.paths.or(self.paths),
            until: over.until.or(self.until),
            run_stack_pattern: over.run_stack_pattern.or(self.run_stack_pattern),
            docker_host: over.docker_host.or(self.docker_host),
            reclaim_superseded_pulls: over
                .reclaim_superseded_pulls
                .or(self.reclaim_superseded_pulls),
            evict: over.evict.or(self.evict),
            evict_low_watermark: over.evict_low_watermark.or(self.evict_low_watermark),
            evict_keep_recent: over.evict_keep_recent.or(self.evict_keep_recent),
            state_dir: over.state_dir.or(self.state_dir),
            gate_stall_warn_after: over.gate_stall_warn_after.or(self.gate_stall_warn_after),
            evict_min_age: over.evict_min_age.or(self.evict_min_age),
            metrics_file: over.metrics_file.or(self.metrics_file),
        }
    }

    /// Validate and fill defaults. `env_docker_host` is `DOCKER_HOST` (used when neither flag
    /// nor file set a host).
    pub fn validate(self, env_docker_host: Option<&str>) -> Result<Config, ConfigError> {
        let threshold = match self.threshold {
            None => DEFAULT_THRESHOLD,
            Some(v) => parse_threshold_value(&v)?,
        };
        let paths = match self.paths {
            None => vec![PathBuf::from("/")],
            Some(p) if p.is_empty() => return Err(ConfigError::Path(String::new())),
            Some(p) => p
                .into_iter()
                .map(|s| {
                    if s.is_empty() || !s.starts_with('/') {
                        Err(ConfigError::Path(s))
                    } else {
                        Ok(PathBuf::from(s))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let until_text = self.until.unwrap_or_else(|| DEFAULT_UNTIL.to_string());
        let until = parse_duration(&until_text)?;
        let pattern_text = self
            .run_stack_pattern
            .unwrap_or_else(|| DEFAULT_RUN_STACK_PATTERN.to_string());
        let run_stack_pattern = Regex::new(&pattern_text).map_err(|e| ConfigError::Pattern {
            value: pattern_text.clone(),
            reason: e
                .to_string()
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .trim_start_matches("error: ")
                .to_string(),
        })?;
        let host_text = self
            .docker_host
            .or_else(|| {
                env_docker_host
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_string());
        let docker_host = DockerHost::parse(&host_text)?;
        let explicit_low = self.evict_low_watermark.is_some();
        let evict_low_watermark = match self.evict_low_watermark {
            None => DEFAULT_LOW_WATERMARK,
            Some(v) => parse_threshold_value(&v).map_err(|e| match e {
                ConfigError::Threshold(v) => ConfigError::LowWatermark(v),
                e => e,
            })?,
        };
        // A low watermark given at or above the threshold makes the tier start and stop at
        // once. Threshold 0 is the disk gate forced open (the verifier's and the tests' dry
        // runs keep the deployed low watermark), and the default watermark is not the
        // operator's choice: neither is refused.
        let evict = self.evict.unwrap_or(true);
        if evict && explicit_low && threshold > 0 && evict_low_watermark >= threshold {
            return Err(ConfigError::LowWatermarkNotBelowThreshold {
                low: evict_low_watermark,
                threshold,
            });
        }
        let keep_text = self
            .evict_keep_recent
            .unwrap_or_else(|| format!("{}d", DEFAULT_KEEP_RECENT_DAYS));
        let evict_keep_recent =
            humantime::parse_duration(keep_text.trim()).map_err(|e| ConfigError::KeepRecent {
                value: keep_text.clone(),
                reason: e.to_string(),
            })?;
        let state_dir = match self.state_dir.filter(|s| !s.is_empty()) {
            None => None,
            Some(s) if s.starts_with('/') => Some(PathBuf::from(s)),
            Some(s) => return Err(ConfigError::StateDir(s)),
        };
        let stall_text = self
            .gate_stall_warn_after
            .unwrap_or_else(|| DEFAULT_GATE_STALL_WARN_AFTER.to_string());
        let gate_stall_warn_after = humantime::parse_duration(stall_text.trim()).map_err(|e| {
            ConfigError::StallWarnAfter {
                value: stall_text.clone(),
                reason: e.to_string(),
            }
        })?;
        let evict_min_age = match self.evict_min_age {
            None => until,
            Some(text) => {
                humantime::parse_duration(text.trim()).map_err(|e| ConfigError::EvictMinAge {
                    value: text.clone(),
                    reason: e.to_string(),
                })?
            }
        };
        let metrics_file = match self.metrics_file.filter(|s| !s.is_empty()) {
            None => None,
            Some(s) if s.starts_with('/') && !s.ends_with('/') => Some(PathBuf::from(s)),
            Some(s) => return Err(ConfigError::MetricsFile(s)),
        };
        Ok(Config {
            threshold,
            paths,
            until,
            run_stack_pattern,
            docker_host,
            reclaim_superseded_pulls: self.reclaim_superseded_pulls.unwrap_or(false),
            evict,
            evict_low_watermark,
            evict_keep_recent,
            state_dir,
            gate_stall_warn_after,
            evict_min_age,
            metrics_file,
        })
    }
}

/// A threshold as given: a TOML integer, or text (a flag, or a TOML string).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Threshold {
    Percent(i64),
    Text(String),
}

/// Parse a threshold given on the command line.
pub fn parse_threshold(text: &str) -> Result<u8, ConfigError> {
    let t = text.trim().trim_end_matches('%');
    match t.parse::<u8>() {
        Ok(v) if v <= 100 && !t.starts_with('+') => Ok(v),
        _ => Err(ConfigError::Threshold(text.to_string())),
    }
}

fn parse_threshold_value(v: &Threshold) -> Result<u8, ConfigError> {
    match v {
        Threshold::Percent(i) if (0..=100).contains(i) => Ok(*i as u8),
        Threshold::Percent(i) => Err(ConfigError::Threshold(i.to_string())),
        Threshold::Text(s) => parse_threshold(s),
    }
}

/// The longest `until` the daemon takes: Docker parses the build prune's `until` filter as a
/// Go duration (nanoseconds in an `int64`), and `9223372036s` is the last whole second of it
/// (measured: the daemon answers 500 to `9223372037s`).
pub const MAX_UNTIL_SECS: u64 = (i64::MAX / 1_000_000_000) as u64;

/// Parse a human duration (`24h`, `90m`, `2days`, `0s`) with humantime, for `until`: whole
/// seconds (Docker's filters take seconds, and a dry run must decide with the same value the
/// daemon is sent) and at most [`MAX_UNTIL_SECS`].
pub fn parse_duration(text: &str) -> Result<Duration, ConfigError> {
    let bad = |reason: String| ConfigError::Duration {
        value: text.to_string(),
        reason,
    };
    let d = humantime::parse_duration(text.trim()).map_err(|e| bad(e.to_string()))?;
    if d.subsec_nanos() != 0 {
        return Err(bad("must be a whole number of seconds".into()));
    }
    if d.as_secs() > MAX_UNTIL_SECS {
        return Err(bad(format!(
            "longer than the {MAX_UNTIL_SECS}s (about 292 years) Docker's filters take"
        )));
    }
    Ok(d)
}

/// Where the Docker daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerHost {
    /// A unix socket path.
    Unix(PathBuf),
    /// Plain HTTP over TCP, `host:port`.
    Tcp(String),
}

impl DockerHost {
    /// Parse `unix:///path`, `tcp://host:port` or `http://host:port`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        if let Some(path) = text.strip_prefix("unix://") {
            if path.starts_with('/') && path.len() > 1 {
                return Ok(DockerHost::Unix(PathBuf::from(path)));
            }
        } else if let Some(addr) = text
            .strip_prefix("tcp://")
            .or_else(|| text.strip_prefix("http://"))
        {
            let addr = addr.trim_end_matches('/');
            if !addr.is_empty() && !addr.contains('/') {
                let addr = if addr.contains(':') {
                    addr.to_string()
                } else {
                    format!("{addr}:2375")
                };
                return Ok(DockerHost::Tcp(addr));
            }
        }
        Err(ConfigError::DockerHost(text.to_string()))
    }
}

impl std::fmt::Display for DockerHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DockerHost::Unix(p) => write!(f, "unix://{}", p.display()),
            DockerHost::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub threshold: u8,
    pub paths: Vec<PathBuf>,
    pub until: Duration,
    pub run_stack_pattern: Regex,
    pub docker_host: DockerHost,
    pub reclaim_superseded_pulls: bool,
    /// The eviction tier is on.
    pub evict: bool,
    /// The tier evicts down to this usage (percent).
    pub evict_low_watermark: u8,
    /// The newest image of a repository deployed within this window is kept.
    pub evict_keep_recent: Duration,
    /// The usage state's directory, if any.
    pub state_dir: Option<PathBuf>,
    /// A gate closed this long while the disk is over the threshold is warned about.
    pub gate_stall_warn_after: Duration,
    /// The eviction tier's age guard (default `until`).
    pub evict_min_age: Duration,
    /// The node_exporter textfile the run writes, if any ([`crate::metrics`]).
    pub metrics_file: Option<PathBuf>,
}

impl Config {
    /// Every `--path` must exist when the run starts (else a usage error, exit 2). One that
    /// vanishes later, mid-run, is a runtime error (exit 1) of the run itself.
    pub fn check_paths_exist(&self) -> Result<(), ConfigError> {
        for p in &self.paths {
            std::fs::metadata(p).map_err(|cause| ConfigError::PathMissing {
                path: p.display().to_string(),
                cause,
            })?;
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        // The defaults are valid by construction; validate() of empty settings cannot fail
        // unless DOCKER_HOST is involved, which it is not here.
        Config {
            threshold: DEFAULT_THRESHOLD,
            paths: vec![PathBuf::from("/")],
            until: Duration::from_secs(24 * 3600),
            run_stack_pattern: Regex::new(DEFAULT_RUN_STACK_PATTERN)
                .unwrap_or_else(|_| unreachable!("default pattern is a valid regex")),
            docker_host: DockerHost::Unix(PathBuf::from("/var/run/docker.sock")),
            reclaim_superseded_pulls: false,
            evict: true,
            evict_low_watermark: DEFAULT_LOW_WATERMARK,
            evict_keep_recent: Duration::from_secs(DEFAULT_KEEP_RECENT_DAYS * 86_400),
            state_dir: None,
            gate_stall_warn_after: Duration::from_secs(24 * 3600),
            evict_min_age: Duration::from_secs(24 * 3600),
            metrics_file: None,
        }
    }
}

/// `until` rendered the way Docker's filters take it (Go duration, whole seconds).
pub fn go_duration(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_contract() {
        let c = Settings::default().validate(None).unwrap();
        assert_eq!(c.threshold, 80);
        assert_eq!(c.paths, vec![PathBuf::from("/")]);
        assert_eq!(c.until, Duration::from_secs(86400));
        assert_eq!(c.run_stack_pattern.as_str(), DEFAULT_RUN_STACK_PATTERN);
        assert_eq!(c.docker_host.to_string(), "unix:///var/run/docker.sock");
        assert!(!c.reclaim_superseded_pulls);
        assert!(c.evict);
        assert_eq!(c.evict_low_watermark, 70);
        assert_eq!(c.evict_keep_recent, Duration::from_secs(14 * 86_400));
        assert_eq!(c.state_dir, None);
        assert_eq!(c.metrics_file, None);
        let m = Settings::from_toml(
            "metrics_file = \"/var/lib/prometheus-node-exporter-text/ci.prom\"\n",
        )
        .unwrap()
        .validate(None)
        .unwrap();
        assert_eq!(
            m.metrics_file,
            Some(PathBuf::from(
                "/var/lib/prometheus-node-exporter-text/ci.prom"
            ))
        );
    }

    #[test]
    fn eviction_keys_parse_and_name_bad_values() {
        let s = Settings::from_toml(
            "evict = false\nevict_low_watermark = 60\nevict_keep_recent = \"7days\"\nstate_dir = \"/var/lib/x\"\n",
        )
        .unwrap();
        let c = s.validate(None).unwrap();
        assert!(!c.evict);
        assert_eq!(c.evict_low_watermark, 60);
        assert_eq!(c.evict_keep_recent, Duration::from_secs(7 * 86_400));
        assert_eq!(c.state_dir, Some(PathBuf::from("/var/lib/x")));
        let bad = |toml: &str| {
            Settings::from_toml(toml)
                .unwrap()
                .validate(None)
                .unwrap_err()
                .to_string()
        };
        assert!(bad("evict_low_watermark = 101").contains("'101'"));
        assert!(bad("evict_keep_recent = \"soon\"").contains("'soon'"));
        assert!(bad("state_dir = \"rel\"").contains("'rel'"));
        assert!(bad("metrics_file = \"ci.prom\"").contains("invalid metrics_file 'ci.prom'"));
        assert!(bad("metrics_file = \"/var/lib/x/\"").contains("'/var/lib/x/'"));
    }

    /// Issue 17, item 13: the tier starts at the threshold and evicts down to the low
    /// watermark, so a watermark given at or above the threshold is a usage error. The table
    /// is the rule as the policy doc states it.
    #[test]
    fn the_low_watermark_must_be_below_the_threshold() {
        let cases: [(&str, bool); 8] = [
            ("threshold = 80\nevict_low_watermark = 70", true),
            ("threshold = 80\nevict_low_watermark = 79", true),
            ("threshold = 80\nevict_low_watermark = 80", false),
            ("threshold = 60\nevict_low_watermark = 90", false),
            // the tier off: the watermark means nothing
            (
                "threshold = 60\nevict_low_watermark = 90\nevict = false",
                true,
            ),
            // threshold 0 forces the disk gate open (the verifier's dry runs)
            ("threshold = 0\nevict_low_watermark = 70", true),
            // the default watermark (70) is not refused, whatever the threshold
            ("threshold = 50", true),
            ("threshold = 100\nevict_low_watermark = 99", true),
        ];
        for (toml, ok) in cases {
            let r = Settings::from_toml(toml).unwrap().validate(None);
            assert_eq!(r.is_ok(), ok, "{toml}: {r:?}");
        }
        let e = Settings::from_toml("threshold = 80\nevict_low_watermark = 85")
            .unwrap()
            .validate(None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "invalid evict_low_watermark 85%: it must be below the threshold (80%) — the eviction tier starts at the threshold and evicts down to the low watermark (or set evict = false)"
        );
    }

    #[test]
    fn docker_host_env_is_used_unless_set_explicitly() {
        let c = Settings::default()
            .validate(Some("unix:///run/x.sock"))
            .unwrap();
        assert_eq!(c.docker_host.to_string(), "unix:///run/x.sock");
        let s = Settings {
            docker_host: Some("tcp://10.0.0.1:2375".into()),
            ..Default::default()
        };
        let c = s.validate(Some("unix:///run/x.sock")).unwrap();
        assert_eq!(c.docker_host, DockerHost::Tcp("10.0.0.1:2375".into()));
    }

    #[test]
    fn threshold_validation_names_the_value() {
        assert_eq!(parse_threshold("0").unwrap(), 0);
        assert_eq!(parse_threshold("100").unwrap(), 100);
        assert_eq!(parse_threshold("85%").unwrap(), 85);
        for bad in ["101", "-1", "eighty", "80.5", "", "+5"] {
            let e = parse_threshold(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("'{bad}'")), "{e}");
        }
    }

    #[test]
    fn duration_validation_names_the_value() {
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("2days").unwrap(),
            Duration::from_secs(172800)
        );
        let e = parse_duration("24 hourz").unwrap_err().to_string();
        assert!(e.contains("'24 hourz'"), "{e}");
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn until_is_whole_seconds_within_what_docker_takes() {
        // 500ms would be sent to the build prune as 0s (everything) while the dry run
        // decided with 0.5 s: refused, like anything the daemon's Go duration cannot hold.
        for bad in ["500ms", "1s 500ms", "9223372037s", "300years"] {
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("'{bad}'")), "{e}");
        }
        assert_eq!(
            parse_duration("9223372036s").unwrap(),
            Duration::from_secs(MAX_UNTIL_SECS)
        );
        assert_eq!(
            go_duration(parse_duration("2562047h").unwrap()),
            "9223369200s"
        );
    }

    #[test]
    fn paths_must_exist_when_the_run_starts() {
        let c = Settings {
            paths: Some(vec!["/".into(), "/definitely/not/here".into()]),
            ..Default::default()
        }
        .validate(None)
        .unwrap();
        let e = c.check_paths_exist().unwrap_err().to_string();
        assert!(e.contains("'/definitely/not/here'"), "{e}");
        assert!(Config::default().check_paths_exist().is_ok());
    }

    #[test]
    fn regex_validation_names_the_value() {
        let s = Settings {
            run_stack_pattern: Some("^(unclosed".into()),
            ..Default::default()
        };
        let e = s.validate(None).unwrap_err().to_string();
        assert!(e.contains("'^(unclosed'"), "{e}");
    }

    #[test]
    fn paths_must_be_absolute() {
        let s = Settings {
            paths: Some(vec!["/".into(), "relative/dir".into()]),
            ..Default::default()
        };
        let e = s.validate(None).unwrap_err().to_string();
        assert!(e.contains("'relative/dir'"), "{e}");
    }

    #[test]
    fn docker_host_schemes() {
        assert!(DockerHost::parse("unix:///var/run/docker.sock").is_ok());
        assert_eq!(
            DockerHost::parse("tcp://example").unwrap(),
            DockerHost::Tcp("example:2375".into())
        );
        for bad in [
            "ssh://host",
            "unix://",
            "unix://relative",
            "/var/run/docker.sock",
            "tcp://",
        ] {
            let e = DockerHost::parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("'{bad}'")), "{e}");
        }
    }

    #[test]
    fn toml_has_the_flag_keys_and_flags_win() {
        let file = Settings::from_toml(
            r#"
threshold = 90
paths = ["/", "/var/lib/docker"]
until = "48h"
run_stack_pattern = "^ci-"
docker_host = "unix:///run/docker.sock"
reclaim_superseded_pulls = true
"#,
        )
        .unwrap();
        let flags = Settings {
            threshold: Some(Threshold::Text("70".into())),
            ..Default::default()
        };
        let c = file.overridden_by(flags).validate(None).unwrap();
        assert_eq!(c.threshold, 70);
        assert_eq!(c.paths.len(), 2);
        assert_eq!(c.until, Duration::from_secs(172800));
        assert_eq!(c.run_stack_pattern.as_str(), "^ci-");
        assert!(c.reclaim_superseded_pulls);
    }

    #[test]
    fn toml_rejects_unknown_keys_and_bad_values() {
        let e = Settings::from_toml("all = true").unwrap_err();
        assert!(e.contains("all"), "{e}");
        let s = Settings::from_toml("threshold = 150").unwrap();
        let e = s.validate(None).unwrap_err().to_string();
        assert!(e.contains("'150'"), "{e}");
        let s = Settings::from_toml("until = \"soon\"").unwrap();
        assert!(s.validate(None).unwrap_err().to_string().contains("'soon'"));
    }
}
