# Builds binaries of this Cargo workspace with nixpkgs' rustPlatform, from the committed
# Cargo.lock (no network at build time; every crate is a vendored crates.io tarball).
#
#   pkgs.callPackage ./nix/package.nix { }                       # both binaries
#   pkgs.callPackage ./nix/package.nix { pname = "ci-docker-prune"; cargoPackages = [ "ci-docker-prune" ]; }
#
# Used by flake.nix (packages.*) and as the default of services.ci-docker-prune.package.
{
  lib,
  rustPlatform,
  pname ? "ccci",
  # Cargo packages (`cargo build -p ...`) whose binaries end up in $out/bin.
  cargoPackages ? [
    "ci-docker-prune"
    "ccci-verify"
  ],
}:

let
  workspace = lib.importTOML ../Cargo.toml;
  fs = lib.fileset;
  # Only what cargo needs to build the workspace: the paths in ./package-files.json
  # (manifests, the lock file, what the crates embed with include_str! from outside their own
  # folder: fixtures/, verify/gates/) and every workspace member (cargo loads them all).
  # Docs, nix/, vm-tests/ and the like stay out, so editing them does not rebuild.
  # tests/tests/package_fileset.rs builds from exactly this list (`cargo check --offline`).
  # prune/build.rs runs in this build too: it fingerprints Cargo.toml, Cargo.lock and prune/
  # (all in this set), and `ci-docker-prune --version` prints it; repro.program-git-eq-host
  # compares it with git's at REV (docs/checks.md).
  src = fs.toSource {
    root = ../.;
    fileset = fs.unions (
      map (p: fs.maybeMissing (../. + "/${p}")) (lib.importJSON ./package-files.json)
      ++ map (member: ../. + "/${member}") workspace.workspace.members
    );
  };
  cargoFlags = lib.concatMap (p: [
    "-p"
    p
  ]) cargoPackages;
in
rustPlatform.buildRustPackage {
  inherit pname src;
  inherit (workspace.workspace.package) version;

  cargoLock.lockFile = ../Cargo.lock;

  cargoBuildFlags = cargoFlags;
  cargoTestFlags = cargoFlags;

  # The test suites need a real Docker daemon in swarm mode, a registry and systemd, none
  # of which exist in the Nix build sandbox. They run in the NixOS VM tests
  # (flake checks, vm-tests/) and in the host suite (`cargo test`, README).
  doCheck = false;

  meta = {
    description = "Gated, surgical Docker prune for swarm CI hosts, and its verification suite";
    license = with lib.licenses; [
      mit
      asl20
    ];
    platforms = lib.platforms.linux;
    mainProgram = builtins.head cargoPackages;
  };
}
