//! The part of the NixOS option tree the walk tracks: the unit families under
//! `systemd.` and the position (`systemd.services.<name>`, a mount list item, …) an
//! expression's value lands at.

/// Unit families under `systemd.`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Service,
    Timer,
    Socket,
    Path,
    Target,
    Slice,
    Mount,
    Automount,
}

impl Kind {
    pub(super) fn from_option(name: &str) -> Option<Kind> {
        Some(match name {
            "services" => Kind::Service,
            "timers" => Kind::Timer,
            "sockets" => Kind::Socket,
            "paths" => Kind::Path,
            "targets" => Kind::Target,
            "slices" => Kind::Slice,
            "mounts" => Kind::Mount,
            "automounts" => Kind::Automount,
            _ => return None,
        })
    }

    pub(super) fn option(self) -> &'static str {
        match self {
            Kind::Service => "services",
            Kind::Timer => "timers",
            Kind::Socket => "sockets",
            Kind::Path => "paths",
            Kind::Target => "targets",
            Kind::Slice => "slices",
            Kind::Mount => "mounts",
            Kind::Automount => "automounts",
        }
    }

    pub(super) fn suffix(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::Timer => "timer",
            Kind::Socket => "socket",
            Kind::Path => "path",
            Kind::Target => "target",
            Kind::Slice => "slice",
            Kind::Mount => "mount",
            Kind::Automount => "automount",
        }
    }

    /// `systemd.mounts` and `systemd.automounts` are lists keyed by `where`.
    pub(super) fn is_list(self) -> bool {
        matches!(self, Kind::Mount | Kind::Automount)
    }
}

/// The systemd manager a unit belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Manager {
    /// The booted host's system manager: `systemd.<kind>`.
    System,
    /// Users' managers: `systemd.user.<kind>`.
    User,
    /// The initrd's systemd: `boot.initrd.systemd.<kind>`.
    Initrd,
}

/// One unit on the way down the option tree.
#[derive(Debug, Clone)]
pub(super) struct UnitRef {
    pub(super) kind: Kind,
    /// Full unit name, `None` when the name could not be resolved.
    pub(super) name: Option<String>,
    /// Source text of the option path, for `unresolved` entries.
    pub(super) path_text: String,
    pub(super) line: u32,
}

/// Where in the option tree an expression's value lands.
#[derive(Debug, Clone)]
pub(super) enum Pos {
    /// The module's top level (also under `config`).
    Root,
    /// `systemd`.
    Systemd,
    /// `systemd.<kind>`: an attribute set of units (or a list, for mounts).
    Kind(Kind),
    /// `systemd.<kind>.<name>`: one unit's definition.
    Unit(UnitRef),
    /// `systemd.services.<name>.startAt`.
    StartAt(UnitRef),
    /// One element of `systemd.mounts` / `systemd.automounts`.
    MountItem(Kind),
    /// A flake's `nixosModules`: each attribute is a module.
    Modules,
    /// `boot`.
    Boot,
    /// `boot.initrd`.
    Initrd,
}

impl Pos {
    pub(super) fn describe(&self) -> String {
        match self {
            Pos::Root => "<module>".to_string(),
            Pos::Systemd => "systemd".to_string(),
            Pos::Kind(k) => format!("systemd.{}", k.option()),
            Pos::Unit(u) => u.path_text.clone(),
            Pos::StartAt(u) => format!("{}.startAt", u.path_text),
            Pos::MountItem(k) => format!("systemd.{} item", k.option()),
            Pos::Modules => "nixosModules".to_string(),
            Pos::Boot => "boot".to_string(),
            Pos::Initrd => "boot.initrd".to_string(),
        }
    }
}
