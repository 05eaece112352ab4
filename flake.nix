{
  description = "ci-docker-prune (gated, surgical Docker prune that keeps the local image cache) and ccci-verify";

  # The workspace needs rustc >= 1.89 (Cargo.toml rust-version: std::fs::File::lock):
  # nixos-25.11 ships a new enough Rust, nixos-25.05 (1.86) does not. Pinned to the release
  # branch; flake.lock is not committed yet because these files were written on machines that
  # cannot fetch nixpkgs: the first `nix flake check` writes it, commit it (docs/nixos.md).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};
      build = args: pkgs.callPackage ./nix/package.nix args;
      packages = {
        ci-docker-prune = build {
          pname = "ci-docker-prune";
          cargoPackages = [ "ci-docker-prune" ];
        };
        ccci-verify = build {
          pname = "ccci-verify";
          cargoPackages = [ "ccci-verify" ];
        };
      };
    in
    {
      packages.${system} = packages // {
        default = build { }; # both binaries
      };

      # The module's `package` option defaults to building ./nix/package.nix with the
      # importing system's pkgs, so the module works the same with or without the flake.
      nixosModules = {
        ci-docker-prune = ./nix/modules/docker-prune.nix;
        default = self.nixosModules.ci-docker-prune;
      };

      checks.${system} = import ./vm-tests {
        inherit pkgs nixpkgs packages;
        src = self;
      };

      # The Rust toolchain and the tools the host test suite calls directly. The sandbox
      # (crate verify/sandbox) is built from Debian packages (debootstrap, Debian's redis and
      # docker-registry): run it on a Debian host, see README.md and .ci/deps.
      devShells.${system}.default = pkgs.mkShell {
        inputsFrom = [ self.packages.${system}.default ];
        packages = with pkgs; [
          cargo
          rustc
          clippy
          rustfmt
          nix # nix-instantiate for tests/tests/nix_files.rs
          git
          docker-client
        ];
      };

      formatter.${system} = pkgs.nixfmt;
    };
}
