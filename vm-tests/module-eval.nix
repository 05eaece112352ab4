# Evaluation check (no VM): the module against the real nixpkgs module system.
#  - good: docker + services.ci-docker-prune evaluate to a system; the units are named
#    ci-docker-prune.{service,timer}; no docker-prune timer, and the docker module's own
#    docker-prune.service (always defined) has no schedule and no target wants it;
#    ExecStart has no --all;
#  - failing side: the same system with virtualisation.docker.autoPrune.enable = true fails
#    evaluation on our assertion, whose message names `--all` (checked on the message itself,
#    and the toplevel fails under builtins.tryEval).
{
  pkgs,
  nixpkgs,
  packages,
}:
let
  inherit (pkgs) lib;
  system' =
    extra:
    nixpkgs.lib.nixosSystem {
      modules = [
        ../nix/modules/docker-prune.nix
        {
          nixpkgs.hostPlatform = pkgs.stdenv.hostPlatform.system;
          boot.isContainer = true; # no bootloader/filesystems needed to evaluate
          system.stateVersion = "25.05";
          virtualisation.docker.enable = true;
          services.ci-docker-prune = {
            enable = true;
            package = packages.ci-docker-prune;
          };
        }
        extra
      ];
    };

  good = system';
  goodSys = good { };
  bad = good { virtualisation.docker.autoPrune.enable = true; };

  failedMessages = sys: map (a: a.message) (lib.filter (a: !a.assertion) sys.config.assertions);
  goodToplevel = builtins.tryEval goodSys.config.system.build.toplevel.drvPath;
  badToplevel = builtins.tryEval bad.config.system.build.toplevel.drvPath;
  svc = goodSys.config.systemd.services;
  tmr = goodSys.config.systemd.timers;
  execStart = svc.ci-docker-prune.serviceConfig.ExecStart;
  # "never --all, never volumes": the cases of verify/checks/src/never_all.rs, on ExecStart's
  # words — `--all` or `--all=V` (V not false/0), a short-flag cluster with `a` (-a, -af, -fa),
  # a flag naming volumes (--volumes, --prune-volumes=…) or the `volume` command
  execWords = map (w: lib.toLower (lib.removePrefix "\"" (lib.removeSuffix "\"" w))) (
    lib.filter (w: w != "") (lib.splitString " " execStart)
  );
  asksForAll =
    w:
    w == "--all"
    || (lib.hasPrefix "--all=" w && !(lib.elem (lib.removePrefix "--all=" w) [ "false" "0" ]))
    || builtins.match "-[a-z]*a[a-z]*" w != null;
  asksForVolumes =
    w:
    (lib.hasPrefix "-" w && lib.hasInfix "volume" (lib.head (lib.splitString "=" w)))
    || w == "volume"
    || w == "volumes";

  problems =
    lib.optional (!goodToplevel.success) "the good configuration does not evaluate"
    ++ lib.optional (failedMessages goodSys != [ ]) "the good configuration has failed assertions"
    ++ lib.optional (!(svc ? ci-docker-prune)) "no systemd.services.ci-docker-prune"
    ++ lib.optional (!(tmr ? ci-docker-prune)) "no systemd.timers.ci-docker-prune"
    # nixpkgs' docker module always defines systemd.services.docker-prune (Docker is on);
    # only its timer (autoPrune) must be absent, and nothing may start the service
    ++ lib.optional (tmr ? docker-prune) "systemd.timers.docker-prune exists"
    ++ lib.optional (
      (svc.docker-prune.startAt or [ ]) != [ ]
    ) "systemd.services.docker-prune has a startAt (autoPrune's schedule)"
    ++ lib.optional (
      (svc.docker-prune.wantedBy or [ ]) != [ ] || (svc.docker-prune.requiredBy or [ ]) != [ ]
    ) "systemd.services.docker-prune is wanted or required by a target"
    ++ lib.optional (lib.any asksForAll execWords) "ExecStart asks for --all"
    ++ lib.optional (lib.any asksForVolumes execWords) "ExecStart asks for volumes"
    ++ lib.optional (tmr.ci-docker-prune.timerConfig.OnCalendar != "daily") "timer is not daily"
    ++ lib.optional (svc.ci-docker-prune.restartIfChanged) "restartIfChanged is not false"
    ++ lib.optional badToplevel.success "autoPrune + ci-docker-prune evaluated; the assertion did not fire"
    ++ lib.optional (
      !(lib.any (lib.hasInfix "--all") (failedMessages bad))
    ) "no failed assertion mentioning --all when autoPrune is enabled";
in
pkgs.runCommand "ci-docker-prune-module-eval"
  {
    passAsFile = [ "report" ];
    report = builtins.toJSON {
      inherit execStart;
      timer = tmr.ci-docker-prune.timerConfig;
      autoPruneFailures = failedMessages bad;
    };
  }
  (
    if problems == [ ] then
      ''
        cp "$reportPath" "$out"
      ''
    else
      ''
        echo "module-eval failed:" >&2
        ${lib.concatMapStrings (p: "echo ${lib.escapeShellArg "  - ${p}"} >&2\n") problems}
        exit 1
      ''
  )
