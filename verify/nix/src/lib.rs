//! `ccci-nix`: the systemd units a NixOS module declares, found by static analysis with
//! a real Nix parser (`rnix`), and the files of a git repository read at a revision.
//!
//! The public entry point for the CLI (`ccci-verify units`) and the repro checks is
//! [`units_report`]; [`Declared::to_json`] renders the `units --json` contract of
//! DESIGN.md. [`extract_units`] analyses one file's text; [`git::GitRepo`] reads a
//! repository at any revision without touching the work tree.
//!
//! Static analysis is not evaluation: the extractor follows the shapes modules are
//! written in (nested attribute sets, quoted and `let`-bound names, `mkIf`/`mkMerge`/
//! `mkDefault`/`mkForce`/`optionalAttrs` wrappers, `with lib;`, `config = mkIf …`,
//! `startAt`, `systemd.mounts` lists, functions defined in the file). Whatever it cannot
//! resolve to a literal name is listed in `unresolved` with its source text and a
//! [`Reason`], never silently dropped. Users' units (`systemd.user`) and the initrd's
//! (`boot.initrd.systemd`) are reported in their own lists, apart from the host's.

mod escape;
mod extract;
pub mod git;

use std::path::Path;

pub use escape::escape_path;
pub use extract::{extract_units, nixpkgs_defines, MAX_FILE_BYTES};
pub use git::{GitError, GitRepo, TreeEntry};

/// A unit declared in a Nix file.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct UnitDecl {
    /// Full unit name with its suffix, e.g. `ci-docker-prune.timer`.
    pub name: String,
    /// Repository-relative path of the declaring file.
    pub file: String,
    /// 1-based line of the declaration (the unit's name, or its `startAt`, or `where`).
    pub line: u32,
    /// True when the declaration sits under a condition (`mkIf`, `optionalAttrs`, `if`,
    /// a conditional `startAt`, an `enable` that is not a literal): the unit exists only
    /// for some configurations.
    pub conditional: bool,
    /// True when nixpkgs (one of its modules, or systemd's own units that NixOS installs)
    /// already defines this unit: the definition here amends it rather than creating it
    /// (additive field: absent when false). Decided from a list taken from nixpkgs
    /// ([`nixpkgs_defines`]).
    #[serde(
        default,
        rename = "override",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub overrides: bool,
}

/// Why a definition is listed under `unresolved` (additive field `reason` of the JSON).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// A unit's name (or a `where`) is computed: from an option, a lambda parameter, a
    /// function over names (`mapAttrs'`, `listToAttrs`).
    ComputedName,
    /// A definition passed through, or returned by, a function the analysis does not
    /// know (`systemd.services.x = mkFetcher "a";` may set a `startAt`, or `enable`).
    FunctionResult,
    /// Inside a NixOS container's configuration (`containers.<name>.config`): a unit of
    /// the container, not of the host.
    ContainerConfig,
    /// Inside a node of a NixOS test (`nodes.<name>`): a unit of a test VM.
    TestNode,
    /// Of the initrd's systemd (`boot.initrd.systemd`), not of the booted host.
    Initrd,
    /// Of a user's systemd (`systemd.user`), not of the system manager.
    User,
    /// An `inherit`ed value: defined elsewhere, not seen.
    Inherited,
    /// The file exceeded the analysis' depth or step bounds.
    AnalysisLimit,
    /// A unit-like definition in a place the walk does not follow (another option path, a
    /// `let` binding, a `nixosSystem { modules = …; }`).
    #[default]
    NotReached,
}

impl Reason {
    /// The JSON spelling, e.g. `computed-name`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ComputedName => "computed-name",
            Reason::FunctionResult => "function-result",
            Reason::ContainerConfig => "container-config",
            Reason::TestNode => "test-node",
            Reason::Initrd => "initrd",
            Reason::User => "user",
            Reason::Inherited => "inherited",
            Reason::AnalysisLimit => "analysis-limit",
            Reason::NotReached => "not-reached",
        }
    }

    /// Whether what is unresolved could be a unit of the booted host's system manager
    /// (a container's, a test VM's, the initrd's or a user's unit cannot).
    pub fn may_be_host_unit(self) -> bool {
        !matches!(
            self,
            Reason::ContainerConfig | Reason::TestNode | Reason::Initrd | Reason::User
        )
    }
}

/// Something that may declare a unit but whose name the analysis cannot resolve.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Unresolved {
    /// Repository-relative path of the file.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// The source text (whitespace collapsed, long text shortened with `…`).
    pub text: String,
    /// Why it is unresolved (additive field).
    #[serde(default)]
    pub reason: Reason,
}

/// The units of one file (or of many, merged).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileUnits {
    pub units: Vec<UnitDecl>,
    pub unresolved: Vec<Unresolved>,
    /// Units switched off with `enable = false`: NixOS links them to `/dev/null` (masked), so
    /// they are not declared present (a conditional `enable = false` leaves the unit listed,
    /// conditional).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<UnitDecl>,
    /// Units of users' systemd (`systemd.user.<kind>.<name>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_units: Vec<UnitDecl>,
    /// Units of the initrd's systemd (`boot.initrd.systemd.<kind>.<name>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub initrd_units: Vec<UnitDecl>,
}

/// Units declared by the Nix files of a repository at a revision (`units --json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Declared {
    /// Full commit id the files were read at.
    pub rev: String,
    /// Sorted by name, then file, then line.
    pub units: Vec<UnitDecl>,
    /// Sorted by file, then line, then text.
    pub unresolved: Vec<Unresolved>,
    /// Units masked with an unconditional `enable = false` (additive field: absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<UnitDecl>,
    /// Units of users' systemd manager (`systemd.user.*`), not of the system manager, so
    /// not in `units` (additive field: absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_units: Vec<UnitDecl>,
    /// Units of the initrd's systemd (`boot.initrd.systemd.*`): they run before the switch
    /// to the booted system and are no unit of the host, so not in `units` (additive
    /// field: absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub initrd_units: Vec<UnitDecl>,
}

impl Declared {
    /// The `units --json` document of DESIGN.md (pretty-printed, stable key order).
    pub fn to_json(&self) -> Result<String, NixError> {
        serde_json::to_string_pretty(self).map_err(NixError::Json)
    }

    /// The set of declared unit names (any file, conditional or not).
    pub fn names(&self) -> std::collections::BTreeSet<String> {
        self.units.iter().map(|u| u.name.clone()).collect()
    }
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum NixError {
    /// Reading the repository failed (not a repo, unknown rev, missing path, ...).
    #[error(transparent)]
    Git(#[from] GitError),
    /// A Nix file does not parse.
    #[error("{file}:{line}:{column}: Nix parse error: {message}")]
    Parse {
        file: String,
        line: u32,
        column: u32,
        message: String,
    },
    /// A Nix file is not UTF-8 text.
    #[error("{file}: not UTF-8 text")]
    NotUtf8 { file: String },
    /// A file too large to be a module (see [`MAX_FILE_BYTES`]).
    #[error("{file}: {bytes} bytes, larger than the {limit}-byte limit for a Nix file")]
    TooLarge {
        file: String,
        bytes: usize,
        limit: usize,
    },
    /// The analysis thread could not be started.
    #[error("cannot start the analysis thread: {0}")]
    Thread(String),
    /// JSON rendering failed.
    #[error("cannot render JSON: {0}")]
    Json(#[source] serde_json::Error),
}

/// Scan `*.nix` files of the repository at `repo` as of revision `rev` (or only the
/// listed repository-relative `files`) and return the units they declare.
///
/// Files are read from git's object database at the resolved commit; the work tree is
/// never read or touched (a dirty work tree does not change the answer — see
/// [`GitRepo::dirty`] to report it).
pub fn units_report(
    repo: &Path,
    rev: &str,
    files: Option<&[String]>,
) -> Result<Declared, NixError> {
    let git = GitRepo::open(repo)?;
    let sha = git.resolve(rev)?;
    let paths: Vec<String> = match files {
        Some(list) => list.iter().map(|p| git::clean_rel(p)).collect(),
        None => git
            .list_files(&sha, "")?
            .into_iter()
            .filter(|p| p.ends_with(".nix"))
            .collect(),
    };
    let mut all = FileUnits::default();
    let contents = git.read_files_at_commit(&sha, &paths)?;
    for (path, bytes) in paths.iter().zip(contents) {
        let text =
            String::from_utf8(bytes).map_err(|_| NixError::NotUtf8 { file: path.clone() })?;
        let one = extract_units(path, &text)?;
        all.units.extend(one.units);
        all.unresolved.extend(one.unresolved);
        all.masked.extend(one.masked);
        all.user_units.extend(one.user_units);
        all.initrd_units.extend(one.initrd_units);
    }
    let FileUnits {
        units,
        unresolved,
        masked,
        user_units,
        initrd_units,
    } = extract::normalise(all);
    Ok(Declared {
        rev: sha,
        units,
        unresolved,
        masked,
        user_units,
        initrd_units,
    })
}
