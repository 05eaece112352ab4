//! Which wrappers each place in a module looks through. The contexts differ (a mount
//! item does not look through `with`, a `mkMerge` list does not look through `mkIf`, a
//! `startAt` does not look through `let`), and the extractor's answers depend on that:
//! each test below pins one context, with a wrapper it looks through and one it does not.

use ccci_nix::{extract_units, FileUnits};

fn run(src: &str) -> FileUnits {
    extract_units("m.nix", src).unwrap_or_else(|e| panic!("extract failed: {e}\n{src}"))
}

/// Unit names with their `conditional` flag.
fn units(src: &str) -> Vec<(String, bool)> {
    run(src)
        .units
        .into_iter()
        .map(|u| (u.name, u.conditional))
        .collect()
}

fn unresolved(src: &str) -> Vec<String> {
    run(src).unresolved.into_iter().map(|u| u.text).collect()
}

/// The `unresolved` texts are exactly one per prefix, in any order.
fn assert_unresolved(src: &str, prefixes: &[&str]) {
    let u = unresolved(src);
    assert_eq!(u.len(), prefixes.len(), "{u:#?}");
    for p in prefixes {
        assert_eq!(
            u.iter().filter(|t| t.starts_with(p)).count(),
            1,
            "{p:?} in {u:#?}"
        );
    }
}

fn pairs(list: &[(&str, bool)]) -> Vec<(String, bool)> {
    list.iter().map(|(n, c)| (n.to_string(), *c)).collect()
}

#[test]
fn an_option_value_looks_through_scoping_conditions_and_priorities_but_not_concat() {
    let src = r#"{ lib, c, ... }: {
      systemd.services = with lib; assert c; let n = "l"; in { ${n} = {}; }
        // (x: { lam = {}; }) // (if c then { yes = {}; } else { no = {}; })
        // mkIf c { cond = {}; } // mkDefault { pass = {}; };
      systemd.timers = { a = {}; } ++ { b = {}; };
      systemd.sockets = lib.optionals c { s = {}; };
    }"#;
    assert_eq!(
        units(src),
        pairs(&[
            ("cond.service", true),
            ("l.service", false),
            ("lam.service", false),
            ("no.service", true),
            ("pass.service", false),
            ("yes.service", true),
        ])
    );
    assert_unresolved(
        src,
        &[
            "systemd.sockets = lib.optionals c",
            "systemd.timers = { a = {}; } ++",
        ],
    );
}

#[test]
fn a_mount_list_looks_through_lists_and_conditions_but_not_assert_lambda_or_update() {
    let src = r#"{ lib, c, ... }: {
      systemd.mounts = with lib; let w = "/l"; in [ { where = w; } ]
        ++ (if c then [ { where = "/if"; } ] else [ ])
        ++ mkIf c [ { where = "/cond"; } ]
        ++ mkDefault [ { where = "/pass"; } ]
        ++ optionals c [ { where = "/optionals"; } ];
      systemd.automounts = (assert c; [ { where = "/assert"; } ])
        ++ (x: [ { where = "/lambda"; } ])
        ++ ([ { where = "/u"; } ] // [ ]);
    }"#;
    assert_eq!(
        units(src),
        pairs(&[
            ("cond.mount", true),
            ("if.mount", true),
            ("l.mount", false),
            ("optionals.mount", true),
            ("pass.mount", false),
        ])
    );
    assert_unresolved(
        src,
        &[
            "systemd.automounts = assert c;",
            "systemd.automounts = x:",
            "systemd.automounts = [ { where = \"/u\"; } ] //",
        ],
    );
}

#[test]
fn a_merge_list_looks_through_concat_and_optionals_only() {
    let src = r#"{ lib, c, ... }: {
      systemd.services = lib.mkMerge ([ { a = {}; } ] ++ lib.optionals c [ { b = {}; } ]);
      systemd.timers = lib.mkMerge (lib.mkIf c [ { t = {}; } ]);
      systemd.sockets = lib.mkMerge (with lib; [ { s = {}; } ]);
      systemd.paths = lib.mkMerge (let p = { p = {}; }; in [ p ]);
    }"#;
    assert_eq!(
        units(src),
        pairs(&[("a.service", false), ("b.service", true)])
    );
    assert_unresolved(
        src,
        &[
            "systemd.paths = let p",
            "systemd.sockets = with lib;",
            "systemd.timers = lib.mkIf c",
        ],
    );
}

#[test]
fn a_mount_item_looks_through_conditions_and_priorities_only() {
    let src = r#"{ lib, c, ... }: {
      systemd.mounts = [
        (lib.mkIf c { where = "/cond"; })
        (lib.mkForce { where = "/pass"; })
        (with lib; { where = "/with"; })
        (let w = "/let"; in { where = w; })
        (if c then { where = "/if"; } else { where = "/else"; })
      ];
    }"#;
    assert_eq!(
        units(src),
        pairs(&[("cond.mount", true), ("pass.mount", false)])
    );
    assert_unresolved(
        src,
        &[
            "systemd.mounts item = if c",
            "systemd.mounts item = let w",
            "systemd.mounts item = with lib;",
        ],
    );
}

#[test]
fn a_start_at_looks_through_with_and_priorities_but_not_let() {
    let src = r#"{ lib, ... }: {
      systemd.services.w.startAt = with lib; [ ];
      systemd.services.p.startAt = lib.mkDefault [ ];
      systemd.services.l.startAt = let none = [ ]; in none;
      systemd.services.a.startAt = assert true; [ ];
    }"#;
    assert_eq!(
        units(src),
        pairs(&[
            ("a.service", false),
            ("a.timer", false),
            ("l.service", false),
            ("l.timer", false),
            ("p.service", false),
            ("w.service", false),
        ])
    );
    assert!(unresolved(src).is_empty());
}

#[test]
fn a_name_looks_through_let_but_not_with_or_priorities() {
    let src = r#"{ lib, ... }: {
      systemd.services.${let n = "l"; in n} = {};
      systemd.services.${with lib; "w"} = {};
      systemd.services.${lib.mkDefault "p"} = {};
    }"#;
    assert_eq!(units(src), pairs(&[("l.service", false)]));
    assert_unresolved(
        src,
        &[
            "systemd.services.${lib.mkDefault \"p\"}",
            "systemd.services.${with lib; \"w\"}",
        ],
    );
}

#[test]
fn gen_attrs_names_look_through_parens_and_bindings_only() {
    let src = r#"{ lib, ... }: let names = [ "b" ]; mk = n: { startAt = "daily"; }; in {
      systemd.services = lib.genAttrs ((names)) (n: { startAt = "daily"; });
      systemd.timers = lib.genAttrs (with lib; [ "w" ]) (n: { });
      systemd.sockets = lib.genAttrs [ "m" ] mk;
    }"#;
    // The function's body is walked only when it is a lambda literal (in parentheses):
    // a name bound to one is not followed, so `m` gets no body and no timer.
    assert_eq!(
        units(src),
        pairs(&[
            ("b.service", false),
            ("b.timer", false),
            ("m.socket", false),
        ])
    );
    assert_unresolved(src, &["systemd.timers = lib.genAttrs (with lib;"]);
}
