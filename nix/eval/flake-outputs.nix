# Evaluates flake.nix's `outputs` against a stand-in nixpkgs (no nixpkgs on the development
# machines), to check the flake's shape: which packages, modules, checks and dev shell it
# exposes, what nix/package.nix passes to buildRustPackage (lock file, version, source
# files, doCheck), and the VM tests' names and Python test scripts. Used by
# tests/tests/nix_files.rs:
#
#   nix-instantiate --eval --strict --json nix/eval/flake-outputs.nix
#
# The stand-in builders return their arguments instead of derivations; nothing is built.
# `lib.fileset` is modelled strictly: every listed path must exist (unless maybeMissing)
# and lie under the root, as the real one requires.
let
  standin = import ./standin.nix;
  storePath = name: "${builtins.storeDir}/00000000000000000000000000000000-${name}";
  drv = name: attrs: attrs // {
    type = "derivation";
    inherit name;
    outPath = storePath name;
  };

  lib = standin.lib // {
    importTOML = file: builtins.fromTOML (builtins.readFile file);
    importJSON = file: builtins.fromJSON (builtins.readFile file);
    licenses = {
      mit = "MIT";
      asl20 = "Apache-2.0";
    };
    platforms.linux = [ "x86_64-linux" ];
    fileset = {
      # a fileset is modelled as a list of paths
      unions = sets: builtins.concatLists (map (s: if builtins.isList s then s else [ s ]) sets);
      maybeMissing = path: if builtins.pathExists path then [ path ] else [ ];
      toSource =
        { root, fileset }:
        let
          rootStr = toString root;
          check =
            p:
            if !(builtins.pathExists p) then
              throw "stand-in lib.fileset: ${toString p} does not exist"
            else if builtins.substring 0 (builtins.stringLength rootStr) (toString p) != rootStr then
              throw "stand-in lib.fileset: ${toString p} is not under ${rootStr}"
            else
              builtins.substring (builtins.stringLength rootStr + 1) (-1) (toString p);
        in
        {
          inherit root;
          files = map check (if builtins.isList fileset then fileset else [ fileset ]);
        };
    };
  };

  pkgs = {
    inherit lib;
    stdenv.hostPlatform.system = "x86_64-linux";
    callPackage =
      fn: args:
      let
        f = if builtins.isFunction fn then fn else import fn;
        wanted = builtins.functionArgs f;
        auto = builtins.intersectAttrs wanted pkgs;
      in
      f (auto // args);
    rustPlatform.buildRustPackage = args: drv "${args.pname}-${args.version}" { buildArgs = args; };
    testers.runNixOSTest = test: drv "vm-test-${test.name}" { inherit test; };
    dockerTools.buildLayeredImage = args: drv "docker-image-${args.name}.tar.gz" { imageArgs = args; };
    runCommand = name: env: script: drv name { inherit env script; };
    mkShell = args: drv "shell" { shellArgs = args; };
  }
  // builtins.listToAttrs (
    map
      (name: {
        inherit name;
        value = drv name { };
      })
      [
        "redis"
        "busybox"
        "jq"
        "git"
        "curl"
        "cargo"
        "rustc"
        "clippy"
        "rustfmt"
        "nix"
        "docker-client"
        "nixfmt"
      ]
  );

  nixpkgs = {
    legacyPackages.x86_64-linux = pkgs;
    lib.nixosSystem = _: throw "stand-in nixpkgs: nixosSystem is not available";
  };

  flake = import ../../flake.nix;
  self = outputs // {
    outPath = toString ../..;
  };
  outputs = flake.outputs {
    inherit self nixpkgs;
  };
  sys = "x86_64-linux";

  packageInfo =
    p:
    let
      a = p.buildArgs;
    in
    {
      inherit (a) pname version doCheck cargoBuildFlags;
      lockFile = toString a.cargoLock.lockFile;
      srcRoot = toString a.src.root;
      srcFiles = a.src.files;
      mainProgram = a.meta.mainProgram;
    };
in
{
  description = flake.description;
  inputs = builtins.mapAttrs (_: i: i.url or null) flake.inputs;
  packages = builtins.mapAttrs (_: packageInfo) outputs.packages.${sys};
  nixosModules = builtins.mapAttrs (_: toString) outputs.nixosModules;
  checks = builtins.attrNames outputs.checks.${sys};
  vmTests = builtins.mapAttrs (_: c: {
    name = c.test.name;
    nodes = builtins.attrNames c.test.nodes;
    testScript = c.test.testScript;
  }) (removeAttrs outputs.checks.${sys} [ "module-eval" ]);
  devShell = builtins.attrNames outputs.devShells.${sys};
}
