# Evaluates nix/modules/docker-prune.nix (or another module file) with the stand-in module
# system in ./standin.nix and returns what the parity test compares. Used by
# tests/tests/nix_files.rs; by hand:
#
#   nix-instantiate --eval --strict --json nix/eval/eval-module.nix \
#     --argstr settings '{"services":{"ci-docker-prune":{"enable":true}}}'
#
# `settings` is JSON (NixOS option values). `services.ci-docker-prune.package` defaults to a
# stand-in store path, because the real default builds the crate with nixpkgs.
{
  module ? ../modules/docker-prune.nix,
  settings ? "{}",
}:
let
  standin = import ./standin.nix;
  fakePackage = {
    type = "derivation";
    name = "ci-docker-prune-0.1.0";
    outPath = "${builtins.storeDir}/00000000000000000000000000000000-ci-docker-prune-0.1.0";
  };
  user = builtins.fromJSON settings;
  userPrune = (user.services or { }).ci-docker-prune or { };
  withPackage =
    if userPrune ? enable && !(userPrune ? package) then
      user // { services = (user.services or { }) // { ci-docker-prune = userPrune // { package = fakePackage; }; }; }
    else
      user;
  evaluated = standin.evalModule {
    inherit module;
    settings = withPackage;
  };
  inherit (evaluated) config options;
  opts = options.services.ci-docker-prune;
in
{
  # Declared options: type, whether documented, default (the package default is a
  # derivation built from nixpkgs, so only its presence is reported).
  options = builtins.mapAttrs (name: o: {
    type = o.type.name;
    typeDescription = o.type.description;
    description = o.description or null;
    hasDefault = o ? default;
    default = if name == "package" then null else o.default or null;
  }) opts;
  packagePath = fakePackage.outPath;
  services = config.systemd.services;
  timers = config.systemd.timers;
  assertions = map (a: a.message) config.assertions;
}
