# Renders the units the module defines as NixOS writes them (nixpkgs' systemd-lib: one
# `Key=value` line per value, lists as repeated lines, booleans `true`/`false`, keys sorted,
# `restartIfChanged = false` as `X-RestartIfChanged=false`, no [Install] section: `wantedBy`
# becomes `<target>.wants/` links), evaluated with the stand-in module system. Used by the
# sandbox's `nixos` flavour (docs/sandbox.md); also renders the unit nixpkgs' docker module
# always defines, `docker-prune.service` (its timer only with autoPrune.enable), inert.
#
#   nix-instantiate --eval --strict --json nix/eval/nixos-units.nix \
#     --argstr packagePath /nix/store/...-ci-docker-prune-0.1.0 --argstr scriptPath /nix/store/...
{
  module ? ../modules/docker-prune.nix,
  settings ? ''{"services":{"ci-docker-prune":{"enable":true}}}'',
  packagePath,
  # the docker module's `script` for docker-prune.service, as a store path of its own
  scriptPath,
  # true: also the autoPrune timer (a wrong state: virtualisation.docker.autoPrune.enable)
  autoPrune ? false,
  # What NixOS adds to every service it renders (nixpkgs' systemd-lib and
  # nixos/modules/system/boot/systemd.nix): `Environment="PATH=…"` from the unit's `path`
  # (coreutils, findutils, gnugrep, gnused, systemd, each `bin` and `sbin`),
  # `Environment="LOCALE_ARCHIVE=…"` and `Environment="TZDIR=…"` from
  # systemd.globalEnvironment. Store paths given by the caller (the sandbox's stand-in system,
  # fixtures/nix/system); null: not rendered (the unit's own settings only).
  nixosEnv ? null,
}:
let
  standin = import ./standin.nix;
  package = {
    type = "derivation";
    name = "ci-docker-prune";
    outPath = packagePath;
  };
  user = builtins.fromJSON settings;
  userPrune = (user.services or { }).ci-docker-prune or { };
  withPackage =
    user // { services = (user.services or { }) // { ci-docker-prune = userPrune // { inherit package; }; }; };
  config = (standin.evalModule { inherit module; settings = withPackage; }).config;
  toValue = v: if v == true then "true" else if v == false then "false" else toString v;
  section = name: attrs:
    "[${name}]\n"
    + builtins.concatStringsSep "" (builtins.concatLists (map (k:
      let v = attrs.${k}; in
      map (x: "${k}=${toValue x}\n") (if builtins.isList v then v else [ v ])
    ) (builtins.attrNames attrs)));
  unitSection = u:
    (if u ? description then { Description = u.description; } else { })
    // (if (u.after or [ ]) != [ ] then { After = u.after; } else { })
    // (if (u.requires or [ ]) != [ ] then { Requires = u.requires; } else { })
    // (if (u.wants or [ ]) != [ ] then { Wants = u.wants; } else { })
    // (if (u.restartIfChanged or true) == false then { X-RestartIfChanged = false; } else { })
    // (u.unitConfig or { });
  # `Environment=` as NixOS writes it: one quoted assignment per line, NixOS's own first, then
  # the unit's `environment`, then serviceConfig's own Environment= values
  quote = s: "\"" + s + "\"";
  platformEnv =
    if nixosEnv == null then [ ]
    else [
      "LOCALE_ARCHIVE=${nixosEnv.localeArchive}"
      "PATH=${builtins.concatStringsSep ":" (builtins.concatMap (p: [ "${p}/bin" "${p}/sbin" ]) nixosEnv.path)}"
      "TZDIR=${nixosEnv.tzdir}"
    ];
  serviceSection = u:
    let
      sc = u.serviceConfig or { };
      own = map (k: "${k}=${toValue u.environment.${k}}") (builtins.attrNames (u.environment or { }));
      scEnv = if sc ? Environment then (if builtins.isList sc.Environment then sc.Environment else [ sc.Environment ]) else [ ];
      env = map quote (platformEnv ++ own) ++ scEnv;
    in
    (builtins.removeAttrs sc [ "Environment" ]) // (if env == [ ] then { } else { Environment = env; });
  service = name: u: {
    name = "${name}.service";
    value = {
      text = section "Unit" (unitSection u) + "\n" + section "Service" (serviceSection u);
      wantedBy = u.wantedBy or [ ];
    };
  };
  timer = name: u: {
    name = "${name}.timer";
    value = {
      text = section "Unit" (unitSection u) + "\n" + section "Timer" (u.timerConfig or { });
      wantedBy = u.wantedBy or [ ];
    };
  };
  # nixpkgs nixos/modules/virtualisation/docker.nix: defined whenever Docker is enabled
  dockerModule = {
    docker-prune = {
      description = "Prune docker resources";
      restartIfChanged = false;
      unitConfig.X-StopOnRemoval = false;
      after = [ "docker.service" ];
      requires = [ "docker.service" ];
      serviceConfig = {
        Type = "oneshot";
        ExecStart = "${scriptPath}/bin/docker-prune-start";
      };
    };
  };
  autoPruneTimer = {
    docker-prune = {
      description = "Prune docker resources timer";
      wantedBy = [ "timers.target" ];
      # `startAt = cfg.autoPrune.dates`: nixpkgs renders startAt as a timer with
      # OnCalendar only (no Unit=: the timer triggers the service of its own name)
      timerConfig = {
        OnCalendar = "weekly";
      };
    };
  };
  services = (config.systemd.services or { }) // dockerModule;
  timers = (config.systemd.timers or { }) // (if autoPrune then autoPruneTimer else { });
in
builtins.listToAttrs (
  builtins.attrValues (builtins.mapAttrs service services)
  ++ builtins.attrValues (builtins.mapAttrs timer timers)
)
