//! Unit tests of the extractor, through [`extract_units`].

use super::*;

fn names(src: &str) -> Vec<(String, bool)> {
    extract_units("m.nix", src)
        .map(|fu| {
            fu.units
                .into_iter()
                .map(|u| (u.name, u.conditional))
                .collect()
        })
        .unwrap_or_else(|e| panic!("extract failed: {e}"))
}

fn unresolved(src: &str) -> Vec<String> {
    extract_units("m.nix", src)
        .map(|fu| fu.unresolved.into_iter().map(|u| u.text).collect())
        .unwrap_or_else(|e| panic!("extract failed: {e}"))
}

fn reasons(src: &str) -> Vec<(u32, Reason)> {
    extract_units("m.nix", src)
        .map(|fu| {
            fu.unresolved
                .into_iter()
                .map(|u| (u.line, u.reason))
                .collect()
        })
        .unwrap_or_else(|e| panic!("extract failed: {e}"))
}

fn managed(src: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let fu = extract_units("m.nix", src).unwrap_or_else(|e| panic!("extract failed: {e}"));
    let n = |l: Vec<UnitDecl>| l.into_iter().map(|u| u.name).collect::<Vec<_>>();
    (n(fu.units), n(fu.user_units), n(fu.initrd_units))
}

#[test]
fn start_at_set_by_a_helper_function_is_listed_not_dropped() {
    // mkFetcher's body sets startAt, so NixOS makes <unit>.timer for every unit it
    // defines: a function defined in the file is read (its parameters unknown), one the
    // reader cannot see into is listed instead of reporting the service alone.
    let src = r#"{ lib, helpers, ... }:
let
  mkFetcher = name: cmd: { startAt = "hourly"; script = "fetch ${name} ${cmd}"; };
  mkWorker = (name: { script = "work ${name}"; });
in {
  systemd.services.f = mkFetcher "a" "x";
  systemd.services.g = lib.recursiveUpdate (mkFetcher "b" "y") { };
  systemd.services.h = mkFetcher "c" "z" // { after = [ ]; };
  systemd.services.w = mkWorker "w";
  systemd.services.i = helpers.mkFetcher "d";
  systemd.services.plain = { script = "x"; };
}"#;
    assert_eq!(
        names(src),
        vec![
            ("f.service".into(), false),
            ("f.timer".into(), false),
            ("g.service".into(), false),
            ("h.service".into(), false),
            ("h.timer".into(), false),
            ("i.service".into(), false),
            ("plain.service".into(), false),
            ("w.service".into(), false),
        ]
    );
    assert_eq!(
        reasons(src),
        vec![(7, Reason::FunctionResult), (10, Reason::FunctionResult)]
    );
    let u = unresolved(src);
    assert!(
        u[0].starts_with("systemd.services.g = lib.recursiveUpdate (mkFetcher"),
        "{u:?}"
    );
}

#[test]
fn a_local_function_that_calls_itself_stops_at_the_depth_bound() {
    let src = r#"{ ... }: let f = x: f x; in { systemd.services.loop = f 1; }"#;
    assert_eq!(names(src), vec![("loop.service".into(), false)]);
    assert_eq!(reasons(src), vec![(1, Reason::AnalysisLimit)]);
}

#[test]
fn enable_that_is_not_a_literal_makes_the_unit_conditional() {
    let src = r#"{ config, lib, ... }: {
      systemd.services.a = { enable = config.x.enable; script = "a"; };
      systemd.services.b.enable = lib.mkDefault true;
      systemd.services.c = { enable = lib.mkForce false; };
      systemd.timers.d.enable = cfg.on && cfg.timer;
      systemd.services.e = { script = "e"; };
      systemd.services.e.enable = lib.mkIf cfg.x true;
      systemd.services.f = { enable = on; startAt = "daily"; };
    }"#;
    assert_eq!(
        names(src),
        vec![
            ("a.service".into(), true),
            ("b.service".into(), false),
            ("d.timer".into(), true),
            ("e.service".into(), true),
            ("f.service".into(), true),
            ("f.timer".into(), false),
        ]
    );
}

#[test]
fn initrd_and_user_units_are_reported_apart_from_the_hosts() {
    let src = r#"{ lib, ... }: {
      boot.initrd.systemd.services.unlock = { script = "x"; };
      boot.initrd = { systemd.timers.t = { }; };
      boot = { initrd.systemd.services."${name}" = { }; };
      systemd.user.services.agent = { startAt = "daily"; };
      systemd = { user.timers.u = { }; services.host = { }; };
      boot.kernelModules = [ ];
    }"#;
    let (system, user, initrd) = managed(src);
    assert_eq!(system, ["host.service"]);
    assert_eq!(user, ["agent.service", "agent.timer", "u.timer"]);
    assert_eq!(initrd, ["t.timer", "unlock.service"]);
    assert_eq!(reasons(src), vec![(4, Reason::Initrd)]);
}

#[test]
fn units_nixpkgs_defines_are_marked_as_overrides() {
    // nginx.service is defined by nixpkgs' nginx module, getty@.service by systemd
    // (nixpkgs' upstreamSystemUnits); my-app is this module's own.
    let src = r#"{ ... }: {
      systemd.services.nginx.serviceConfig.LimitNOFILE = 65536;
      systemd.services."getty@tty1".enable = false;
      systemd.services."serial-getty@ttyS0".serviceConfig.X = 1;
      systemd.services.my-app = { script = "x"; };
    }"#;
    let fu = extract_units("m.nix", src).unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<(String, bool)> = fu
        .units
        .into_iter()
        .map(|u| (u.name, u.overrides))
        .collect();
    assert_eq!(
        got,
        vec![
            ("my-app.service".into(), false),
            ("nginx.service".into(), true),
            ("serial-getty@ttyS0.service".into(), true),
        ]
    );
    let masked: Vec<(String, bool)> = fu
        .masked
        .into_iter()
        .map(|u| (u.name, u.overrides))
        .collect();
    assert_eq!(masked, vec![("getty@tty1.service".into(), true)]);
}

#[test]
fn unresolved_entries_carry_a_reason_category() {
    let src = r#"{ config, lib, pkgs, ... }: let cfg = config.x; in {
      systemd.services.${cfg.name} = { };
      systemd.timers = lib.mapAttrs' (n: v: v) cfg.timers;
      containers.web.config = { systemd.services.inner = { }; };
      containers.db = { config = { ... }: { systemd.services.db = { }; }; };
      virtualisation.vmVariant.systemd.services.vm = { };
      systemd.mounts = [ { where = cfg.path; } ];
      inherit (cfg) systemd;
      extra = pkgs.writeText "x" (builtins.toJSON { systemd.services.y = { }; });
    }"#;
    assert_eq!(
        reasons(src),
        vec![
            (2, Reason::ComputedName),
            (3, Reason::ComputedName),
            (4, Reason::ContainerConfig),
            (5, Reason::ContainerConfig),
            (6, Reason::NotReached),
            (7, Reason::ComputedName),
            (8, Reason::Inherited),
            (9, Reason::FunctionResult),
        ]
    );
    let test = r#"import ./make-test.nix ({ pkgs, ... }: {
      name = "t";
      nodes.machine = { systemd.services.probe = { }; };
      nodes = { client = { systemd.timers.tick = { }; }; };
      testScript = "";
    })"#;
    assert_eq!(
        reasons(test),
        vec![(3, Reason::TestNode), (4, Reason::TestNode)]
    );
}

#[test]
fn dotted_service_and_timer() {
    let src = "{ ... }: { systemd.services.a = {}; systemd.timers.a = { }; }";
    assert_eq!(
        names(src),
        vec![("a.service".into(), false), ("a.timer".into(), false)]
    );
}

#[test]
fn nested_sets_and_config_mkif() {
    let src = r#"{ config, lib, ... }: with lib; {
      options.services.x.enable = mkEnableOption "x";
      config = mkIf config.services.x.enable {
        systemd = { timers.t = {}; services = { s = {}; "q-r" = {}; }; };
      };
    }"#;
    assert_eq!(
        names(src),
        vec![
            ("q-r.service".into(), true),
            ("s.service".into(), true),
            ("t.timer".into(), true)
        ]
    );
}

#[test]
fn let_bound_names_and_interpolation() {
    let src = r#"{ lib, ... }: let name = "ci-prune"; other = "${name}-x"; in {
      systemd.services.${name} = {};
      systemd.services."${name}-b" = {};
      systemd.timers.${other} = {};
    }"#;
    assert_eq!(
        names(src),
        vec![
            ("ci-prune-b.service".into(), false),
            ("ci-prune-x.timer".into(), false),
            ("ci-prune.service".into(), false)
        ]
    );
}

#[test]
fn unresolvable_names_are_listed() {
    let src = r#"{ config, ... }: let cfg = config.x; in {
      systemd.services.${cfg.name} = { startAt = "daily"; };
      systemd.timers = lib.mapAttrs' (n: v: v) cfg.timers;
    }"#;
    assert!(names(src).is_empty());
    let u = unresolved(src);
    assert_eq!(u.len(), 3, "{u:?}");
    assert!(u[0].contains("${cfg.name}"), "{u:?}");
}

#[test]
fn start_at_implies_timer_and_conditionals() {
    let src = r#"{ lib, cfg, ... }: with lib; {
      systemd.services.a = { startAt = "daily"; };
      systemd.services.b.startAt = optional cfg.on "weekly";
      systemd.services.c = { startAt = [ ]; };
      systemd.services.d.startAt = if cfg.on then "daily" else [];
      systemd.services.e.startAt = mkDefault "hourly";
      systemd.services.f = mkIf cfg.on { startAt = "daily"; };
    }"#;
    assert_eq!(
        names(src),
        vec![
            ("a.service".into(), false),
            ("a.timer".into(), false),
            ("b.service".into(), false),
            ("b.timer".into(), true),
            ("c.service".into(), false),
            ("d.service".into(), false),
            ("d.timer".into(), true),
            ("e.service".into(), false),
            ("e.timer".into(), false),
            ("f.service".into(), true),
            ("f.timer".into(), true),
        ]
    );
}

#[test]
fn mounts_by_where() {
    let src = r#"{ lib, c, ... }: {
      systemd.mounts = [ { where = "/var/lib/docker"; what = "/dev/x"; } ]
        ++ lib.optional c { where = "/mnt/a-b"; };
      systemd.automounts = [ { where = c.path; } ];
    }"#;
    assert_eq!(
        names(src),
        vec![
            ("mnt-a\\x2db.mount".into(), true),
            ("var-lib-docker.mount".into(), false)
        ]
    );
    assert_eq!(unresolved(src).len(), 1);
}

#[test]
fn comments_and_strings_never_yield_units() {
    let src = r#"{ pkgs, ... }: {
      # systemd.services.commented = {};
      /* systemd.timers.block = {}; */
      environment.etc.x.text = "systemd.services.instring = {};";
      environment.etc.y.text = ''
        systemd.sockets.multi = {};
      '';
    }"#;
    assert!(names(src).is_empty());
    assert!(unresolved(src).is_empty());
}

#[test]
fn unknown_function_arguments_are_swept() {
    let src = r#"{ lib, ... }: lib.something { systemd.services.hidden = {}; }"#;
    assert!(names(src).is_empty());
    let u = unresolved(src);
    assert_eq!(u.len(), 1);
    assert!(u[0].contains("systemd.services.hidden"), "{u:?}");
}

#[test]
fn parse_error_has_position() {
    let err = extract_units("bad.nix", "{\n  a = ;\n}").err();
    match err {
        Some(NixError::Parse { file, line, .. }) => {
            assert_eq!(file, "bad.nix");
            assert_eq!(line, 2);
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn lines_are_one_based() {
    let src = "{ ... }:\n{\n  systemd.services.a = {};\n\n  systemd.timers.b = {};\n}\n";
    let fu = extract_units("m.nix", src).unwrap_or_default();
    let lines: Vec<u32> = fu.units.iter().map(|u| u.line).collect();
    assert_eq!(lines, vec![3, 5]);
}

#[test]
fn enable_false_masks_the_unit() {
    // NixOS links a unit with `enable = false` to /dev/null: it is not a present unit
    let got = names(
        r#"{ ... }: {
          systemd.services."getty@tty1".enable = false;
          systemd.services.kept = { enable = true; };
          systemd.services.off = { enable = false; serviceConfig.X = 1; };
          systemd.timers.maybe.enable = lib.mkIf cfg.x false;
        }"#,
    );
    assert_eq!(
        got,
        vec![
            ("kept.service".to_string(), false),
            // masked only when cfg.x: present only for some configurations
            ("maybe.timer".to_string(), true)
        ]
    );
}

#[test]
fn user_units_the_walk_does_not_reach_are_listed_as_user() {
    // home-manager's per-user configuration and an unknown function's argument: units of a
    // user's manager that the walk does not follow, listed rather than skipped.
    let src = r#"{ lib, ... }: {
      home-manager.users.alice.systemd.user.services.sync = { };
      home-manager.users.bob = { systemd.user = { timers.tick = { }; }; };
      x = lib.something { systemd.user.services.hidden = { }; };
    }"#;
    let (system, user, initrd) = managed(src);
    assert!(system.is_empty() && user.is_empty() && initrd.is_empty());
    assert_eq!(
        reasons(src),
        vec![(2, Reason::User), (3, Reason::User), (4, Reason::User)]
    );
}
