# NixOS module: a gated, surgical Docker prune that keeps the local image cache.
#
# Replaces `virtualisation.docker.autoPrune` (which runs `docker system prune -f` plus
# `autoPrune.flags`: by default it deletes dangling images, and a swarm-pulled image is
# dangling once its service is gone; with `--all`, the flag users commonly add, every image
# no running container uses: the base images every CI run needs).
# The binary `ci-docker-prune` prunes only under disk pressure, never while a CI run is
# live or a swarm service converges, and never asks the daemon for `--all` or volumes.
#
# Unit names are `ci-docker-prune.{service,timer}`: the NixOS docker module owns
# `systemd.services.docker-prune` (autoPrune), so nothing here is named `docker-prune`.
# The timer is declared explicitly (no `startAt`) so its settings are visible and the
# static unit extractor (`ccci-verify units`) resolves both names from this file.
#
# Options: docs/nixos.md. Runbook: docs/runbook.md.
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkEnableOption mkOption mkIf types literalExpression;

  cfg = config.services.ci-docker-prune;

  # node_exporter's textfile collector directory, when services.prometheus.exporters.node
  # runs with the textfile collector and names its directory
  # (`--collector.textfile.directory=DIR` in extraFlags; nixpkgs has no option of its own
  # for it); else null.
  nodeExporter = config.services.prometheus.exporters.node or { };
  textfileFlag = "--collector.textfile.directory=";
  textfileDirs = map (f: builtins.substring (builtins.stringLength textfileFlag) (-1) f) (
    builtins.filter (
      f: builtins.substring 0 (builtins.stringLength textfileFlag) f == textfileFlag
    ) (nodeExporter.extraFlags or [ ])
  );
  textfileDir =
    if
      (nodeExporter.enable or false)
      && builtins.elem "textfile" (nodeExporter.enabledCollectors or [ ])
      && textfileDirs != [ ]
    then
      builtins.head textfileDirs
    else
      null;

  # systemd's ExecStart= is not a shell command line: it unquotes "..." with C escapes,
  # expands `%` specifiers and `$VAR` even inside quotes. Each argument is therefore
  # written as a JSON string (valid systemd double-quoting) with `%` and `$` doubled.
  # This is what nixpkgs' `utils.escapeSystemdExecArgs` does; `lib.escapeShellArgs`
  # alone would leave `$`/`%` (e.g. a `$` anchor in runStackPattern) to be expanded.
  escapeSystemdExecArg =
    arg: builtins.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (builtins.toJSON (toString arg));
  escapeSystemdExecArgs = args: lib.concatMapStringsSep " " escapeSystemdExecArg args;

  # The command line, as argv. Every flag is spelled out (also the defaults) so the
  # deployed unit shows exactly what it will do. No `--all`, no volumes: the binary has
  # no such flags, and the parity test (tests/tests/nix_files.rs) rejects them here.
  argv =
    [
      "${cfg.package}/bin/ci-docker-prune"
      "--threshold"
      (toString cfg.threshold)
    ]
    ++ lib.concatMap (p: [
      "--path"
      p
    ]) cfg.paths
    ++ [
      "--until"
      cfg.until
      "--run-stack-pattern"
      cfg.runStackPattern
      "--evict-low-watermark"
      (toString cfg.evictLowWatermark)
      "--evict-keep-recent"
      cfg.evictKeepRecent
    ]
    ++ lib.optional (!cfg.evict) "--no-evict"
    ++ lib.optionals (cfg.metricsFile != null) [
      "--metrics-file"
      cfg.metricsFile
    ];
in
{
  options.services.ci-docker-prune = {
    enable = mkEnableOption ''
      the gated, surgical Docker prune (`ci-docker-prune`) on a systemd timer. It removes
      only stopped containers, untagged build leftovers that never came from a registry
      and build cache older than `until`, and only when disk usage is at or above
      `threshold`, no CI run is live and no swarm service is converging. It never prunes
      `--all` and never touches volumes: the local image store is the CI image cache'';

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ../package.nix {
        pname = "ci-docker-prune";
        cargoPackages = [ "ci-docker-prune" ];
      };
      defaultText = literalExpression ''
        pkgs.callPackage ./nix/package.nix {
          pname = "ci-docker-prune";
          cargoPackages = [ "ci-docker-prune" ];
        }'';
      description = "The package providing `bin/ci-docker-prune`.";
    };

    threshold = mkOption {
      type = types.ints.between 0 100;
      default = 80;
      example = 90;
      description = ''
        Disk usage in percent at or above which pruning may happen (`--threshold`). The
        highest usage over `paths` counts. Below it the timer run removes nothing and logs
        that it keeps the local image cache.
      '';
    };

    paths = mkOption {
      type = types.nonEmptyListOf (types.strMatching "/.*");
      default = [ "/" ];
      example = [
        "/"
        "/var/lib/docker"
      ];
      description = ''
        Absolute paths whose filesystems are measured for the disk gate (one `--path`
        each). Include the Docker data root if it is on its own filesystem.
      '';
    };

    until = mkOption {
      type = types.str;
      default = "24h";
      example = "48h";
      description = ''
        Minimum age of anything removed (`--until`, a duration like `24h` or `90m`):
        stopped containers, untagged build leftovers and build cache younger than this
        are kept.
      '';
    };

    runStackPattern = mkOption {
      type = types.str;
      default = "^[a-z0-9]{1,4}-[0-9a-f]{6}_ci_commoninternet_net_";
      description = ''
        Regular expression (Rust `regex` syntax) matching swarm service names of live CI
        runs (`--run-stack-pattern`). While any service matches, the run is skipped:
        never prune mid-run.
      '';
    };

    evict = mkOption {
      type = types.bool;
      default = true;
      description = ''
        The eviction tier: when disk usage is still at or above `threshold` after the
        leftovers went, evict untagged cached pulls that no service references (scaled to
        zero included) and no container uses, least recently used first, down to
        `evictLowWatermark`. `false` renders `--no-evict`: cached pulls are never removed
        and the disk may fill on a host whose recipes release often (docs/prune-policy.md).
      '';
    };

    evictLowWatermark = mkOption {
      type = types.ints.between 0 100;
      default = 70;
      example = 60;
      description = ''
        Usage in percent down to which the eviction tier evicts (`--evict-low-watermark`);
        the disk is re-measured after each image.
      '';
    };

    evictKeepRecent = mkOption {
      type = types.str;
      default = "14d";
      example = "30d";
      description = ''
        The newest image of a repository deployed within this window is never evicted
        (`--evict-keep-recent`, a duration like `14d` or `7days`): the next CI run of that
        recipe deploys it.
      '';
    };

    schedule = mkOption {
      type = types.str;
      default = "daily";
      example = "*-*-* 03:00:00";
      description = ''
        When the timer fires: a systemd calendar expression (`OnCalendar=`, see
        {manpage}`systemd.time(7)`).
      '';
    };

    randomizedDelaySec = mkOption {
      type = types.str;
      default = "1h";
      example = "45min";
      description = ''
        Random delay added to each scheduled run (`RandomizedDelaySec=`, a systemd time
        span; `"0"` disables it), so hosts sharing a schedule do not all prune at once.
      '';
    };

    persistent = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Whether a run missed while the machine was off is started at the next boot
        (`Persistent=`).
      '';
    };

    metricsFile = mkOption {
      type = types.nullOr (types.strMatching "/.*[^/]");
      default = if textfileDir == null then null else "${textfileDir}/ci-docker-prune.prom";
      defaultText = literalExpression ''
        "''${DIR}/ci-docker-prune.prom" when services.prometheus.exporters.node is enabled
        with the textfile collector and `--collector.textfile.directory=DIR` in its
        extraFlags, else null'';
      example = "/var/lib/prometheus-node-exporter-text/ci-docker-prune.prom";
      description = ''
        Where each run writes node_exporter textfile metrics (`--metrics-file`, atomically:
        last run time and outcome, gates, usage, removals, cache, eviction queue, failures;
        docs/runbook.md lists them and the alert rules in nix/alerts/). Counters are kept
        in the state directory. `null`: no metrics. The file's directory is made writable
        for the unit (`ReadWritePaths=`); it must exist.
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = !(config.virtualisation.docker.autoPrune.enable or false);
        message = ''
          services.ci-docker-prune replaces virtualisation.docker.autoPrune; set
          virtualisation.docker.autoPrune.enable = false. autoPrune runs
          `docker system prune -f` plus autoPrune.flags: by default that deletes dangling
          images, and an image a swarm service pulled by digest is dangling once the service
          is gone; with `--all` (the flag commonly added) it evicts every image no running
          container uses. Either way the local image cache goes, the next CI run re-pulls
          and hits the registry's pull rate limit.
        '';
      }
      {
        # the binary refuses the same with exit 2 at every run; say it at evaluation instead
        assertion = cfg.evictLowWatermark < cfg.threshold;
        message = ''
          services.ci-docker-prune.evictLowWatermark (${toString cfg.evictLowWatermark}) must be
          below services.ci-docker-prune.threshold (${toString cfg.threshold}): the eviction
          tier evicts from the threshold down to the low watermark. Lower evictLowWatermark
          with the threshold.
        '';
      }
    ];

    systemd.services.ci-docker-prune = {
      description = "Gated, surgical Docker prune (keeps the local image cache)";
      # Ordered after Docker, never pulling it up (no requires/wants): a run below the
      # threshold never contacts the daemon, so a deliberately stopped Docker stays stopped.
      # The same as the portable unit; docs/prune-policy.md, "systemd".
      after = [ "docker.service" ];
      # A config switch must not start a prune; the timer decides when it runs.
      restartIfChanged = false;
      # …and a switch that removes the unit does not stop a prune mid-run (as nixpkgs' own
      # docker-prune.service is marked)
      unitConfig.X-StopOnRemoval = false;
      serviceConfig = {
        Type = "oneshot";
        ExecStart = escapeSystemdExecArgs argv;
        SyslogIdentifier = "ci-docker-prune";
        Nice = 10;
        IOSchedulingClass = "idle";
        # The eviction tier's usage state: /var/lib/ci-docker-prune/usage.json
        # ($STATE_DIRECTORY; writable under ProtectSystem=strict).
        StateDirectory = "ci-docker-prune";
        StateDirectoryMode = "0700";
        # --metrics-file: its directory writable under ProtectSystem=strict ("-": a missing
        # directory does not stop the unit; the run logs that it cannot write the file)
        ReadWritePaths = mkIf (cfg.metricsFile != null) [ "-${dirOf cfg.metricsFile}" ];
        # Hardening, the same as the portable unit (prune/systemd/ci-docker-prune.service):
        # the tool statvfs()es `paths`, connect()s to the Docker unix socket and writes only
        # its state directory.
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = "read-only";
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectHostname = true;
        RestrictAddressFamilies = [ "AF_UNIX" ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [
          "@system-service"
          "~@privileged @resources @mount @swap @reboot @module @raw-io @clock @cpu-emulation @debug @obsolete"
        ];
        SystemCallErrorNumber = "EPERM";
        CapabilityBoundingSet = "";
        AmbientCapabilities = "";
        UMask = "0077";
      };
    };

    systemd.timers.ci-docker-prune = {
      description = "Scheduled gated, surgical Docker prune (ci-docker-prune)";
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnCalendar = cfg.schedule;
        Persistent = cfg.persistent;
        RandomizedDelaySec = cfg.randomizedDelaySec;
        AccuracySec = "1min";
        Unit = "ci-docker-prune.service";
      };
    };
  };
}
