# The NixOS VM tests and the module evaluation check, exposed by flake.nix as
# checks.x86_64-linux.*. Run one with e.g. `nix build .#checks.x86_64-linux.vm-cache -L`.
{
  pkgs,
  nixpkgs,
  packages, # { ci-docker-prune, ccci-verify }
  src, # the repository source, for the gate test's git repo and deployed tree
}:
let
  common = import ./common.nix { inherit pkgs packages; };
in
{
  module-eval = import ./module-eval.nix { inherit pkgs nixpkgs packages; };
  vm-prune-policy = pkgs.testers.runNixOSTest (import ./prune-policy.nix { inherit pkgs common; });
  vm-cache = pkgs.testers.runNixOSTest (import ./cache.nix { inherit pkgs common; });
  vm-gate = pkgs.testers.runNixOSTest (import ./gate.nix { inherit pkgs common src; });
}
