//! The shape of the host a sandbox models, chosen at `up`: the host **flavour** (Debian's unit
//! layout, or NixOS's store-linked units), the Docker **engine** (Debian bookworm's 20.10 or a
//! newer one from trixie or sid) and the **image store** (the legacy graph-driver store or the
//! containerd store). See docs/sandbox.md, "Host shapes".
//!
//! Each shape is its own sandbox: without `CCCI_SANDBOX_NAME`, the name derives from the shape
//! (`ccci` for the default, `ccci-nixos`, `ccci-sid-ctrd`, …), so the suite can keep one
//! sandbox per shape up side by side.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// How the host lays out its units and secrets.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    /// Units in `/etc/systemd/system`, credentials a 0600 file (today's default).
    #[default]
    Debian,
    /// Units linked from `/nix/store` through `/etc/static`, sops-rendered credentials,
    /// `/run/current-system`, a real `nix`.
    Nixos,
}

/// Which dockerd (and containerd) the sandbox runs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// The machine's own Debian bookworm `docker.io` (20.10, API 1.41).
    #[default]
    Bookworm,
    /// Debian trixie's `docker.io` (26.1), fetched into the sandbox cache.
    Trixie,
    /// Debian sid's newest `docker.io`, fetched into the sandbox cache.
    Sid,
    /// A directory holding `dockerd`, `containerd`, `containerd-shim-runc-v2` (and `docker-init`).
    Path(PathBuf),
}

/// Where the daemon keeps images.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ImageStore {
    /// The graph-driver store (overlay2), Docker's default before 29.
    #[default]
    Legacy,
    /// The containerd image store (`features.containerd-snapshotter`), Docker 29's default.
    Containerd,
}

impl Flavour {
    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::Debian => "debian",
            Flavour::Nixos => "nixos",
        }
    }
}

impl Engine {
    /// The name in flags, environment variables and sandbox names (`path` for a directory).
    pub fn as_str(&self) -> &str {
        match self {
            Engine::Bookworm => "bookworm",
            Engine::Trixie => "trixie",
            Engine::Sid => "sid",
            Engine::Path(_) => "path",
        }
    }
}

impl ImageStore {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageStore::Legacy => "legacy",
            ImageStore::Containerd => "containerd",
        }
    }
}

impl fmt::Display for Flavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Engine::Path(p) => write!(f, "{}", p.display()),
            other => f.write_str(other.as_str()),
        }
    }
}
impl fmt::Display for ImageStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Flavour {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "debian" => Ok(Flavour::Debian),
            "nixos" => Ok(Flavour::Nixos),
            _ => Err(format!(
                "unknown host flavour `{s}`: expected debian or nixos"
            )),
        }
    }
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bookworm" => Ok(Engine::Bookworm),
            "trixie" => Ok(Engine::Trixie),
            "sid" => Ok(Engine::Sid),
            p if p.starts_with('/') => Ok(Engine::Path(PathBuf::from(p))),
            _ => Err(format!(
                "unknown engine `{s}`: expected bookworm, trixie, sid or an absolute directory holding dockerd"
            )),
        }
    }
}

impl std::str::FromStr for ImageStore {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "legacy" => Ok(ImageStore::Legacy),
            "containerd" => Ok(ImageStore::Containerd),
            _ => Err(format!(
                "unknown image store `{s}`: expected legacy or containerd"
            )),
        }
    }
}

/// A host shape: flavour, engine, image store.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Shape {
    #[serde(default)]
    pub flavour: Flavour,
    #[serde(default)]
    pub engine: Engine,
    #[serde(default)]
    pub image_store: ImageStore,
}

/// The environment variables that choose a shape.
pub const FLAVOUR_ENV: &str = "CCCI_SANDBOX_FLAVOUR";
pub const ENGINE_ENV: &str = "CCCI_SANDBOX_ENGINE";
pub const IMAGE_STORE_ENV: &str = "CCCI_SANDBOX_IMAGE_STORE";

impl Shape {
    /// From `CCCI_SANDBOX_FLAVOUR`, `CCCI_SANDBOX_ENGINE`, `CCCI_SANDBOX_IMAGE_STORE` (unset:
    /// the default of each); a value that names nothing is an error naming the variable.
    pub fn from_env() -> Result<Shape, String> {
        fn var<T: std::str::FromStr<Err = String> + Default>(name: &str) -> Result<T, String> {
            match std::env::var(name) {
                Ok(v) if !v.is_empty() => v.parse().map_err(|e| format!("{name}: {e}")),
                _ => Ok(T::default()),
            }
        }
        Ok(Shape {
            flavour: var(FLAVOUR_ENV)?,
            engine: var(ENGINE_ENV)?,
            image_store: var(IMAGE_STORE_ENV)?,
        })
    }

    /// The default sandbox name of this shape: `ccci` for the default shape, else `ccci-` and
    /// the parts that differ from the default (`ccci-nixos`, `ccci-sid-ctrd`).
    pub fn default_name(&self) -> String {
        let mut parts = vec![crate::DEFAULT_NAME.to_string()];
        if self.flavour != Flavour::default() {
            parts.push(self.flavour.as_str().into());
        }
        if self.engine != Engine::default() {
            parts.push(self.engine.as_str().into());
        }
        if self.image_store != ImageStore::default() {
            parts.push("ctrd".into());
        }
        parts.join("-")
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "flavour {}, engine {}, image store {}",
            self.flavour, self.engine, self.image_store
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_per_shape() {
        assert_eq!(Shape::default().default_name(), "ccci");
        let s = Shape {
            flavour: Flavour::Nixos,
            ..Default::default()
        };
        assert_eq!(s.default_name(), "ccci-nixos");
        let s = Shape {
            engine: Engine::Sid,
            image_store: ImageStore::Containerd,
            ..Default::default()
        };
        assert_eq!(s.default_name(), "ccci-sid-ctrd");
        let s = Shape {
            flavour: Flavour::Nixos,
            engine: Engine::Trixie,
            image_store: ImageStore::Containerd,
        };
        assert!(s.default_name().len() <= 24, "{}", s.default_name());
    }

    #[test]
    fn parse() {
        assert_eq!("nixos".parse::<Flavour>(), Ok(Flavour::Nixos));
        assert!("arch".parse::<Flavour>().is_err());
        assert_eq!("sid".parse::<Engine>(), Ok(Engine::Sid));
        assert_eq!(
            "/opt/docker/bin".parse::<Engine>(),
            Ok(Engine::Path("/opt/docker/bin".into()))
        );
        assert!("docker29".parse::<Engine>().is_err());
        assert_eq!(
            "containerd".parse::<ImageStore>(),
            Ok(ImageStore::Containerd)
        );
        assert!("zfs".parse::<ImageStore>().is_err());
    }
}
