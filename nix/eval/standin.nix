# A minimal stand-in for the NixOS module system, for hosts that have Nix but no nixpkgs
# (nixpkgs cannot be fetched on the development machines; Debian's nix-bin can evaluate).
#
# It evaluates ONE module the way lib.evalModules would, for the subset of features that
# module uses, and it is strict where NixOS is strict:
#   - a `lib` subset (mkOption, mkEnableOption, mkIf, types.*, literalExpression, list and
#     string helpers) with the same semantics as nixpkgs' for these cases;
#   - option declarations are collected from the module's `options`; definitions come
#     from the caller's settings and from the module's `config`;
#   - `mkIf` is pushed down through attribute sets like nixpkgs' pushDownProperties, so a
#     condition is only forced at the option it guards (no false infinite recursion);
#   - every definition is type-checked (`type.check`), multiple definitions merge like
#     nixpkgs' (lists concatenate, attribute sets merge by key, scalars must be equal);
#   - defining an option that does not exist is an error (as in NixOS);
#   - `assertions` are checked and a failure throws "Failed assertions: ..." (as NixOS
#     does when building `system.build.toplevel`).
# It does NOT model: the real systemd submodule (no unit-file rendering, no option
# defaults of systemd.services.*), priorities (mkDefault/mkForce/mkOverride), mkMerge,
# mkOrder, imports, the real `pkgs`. The options of other modules that ours touches are
# declared below with their NixOS types (FOREIGN); only those exist. See docs/nixos.md.
let
  # ---- lib subset -------------------------------------------------------------------
  lib = rec {
    id = x: x;
    concatMap = f: list: builtins.concatLists (map f list);
    concatMapStringsSep = sep: f: list: builtins.concatStringsSep sep (map f list);
    concatStringsSep = builtins.concatStringsSep;
    optional = cond: x: if cond then [ x ] else [ ];
    optionals = cond: xs: if cond then xs else [ ];
    optionalAttrs = cond: as: if cond then as else { };
    escapeShellArg =
      arg: "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] (toString arg)}'";
    escapeShellArgs = concatMapStringsSep " " escapeShellArg;
    isDerivation = x: builtins.isAttrs x && (x.type or null) == "derivation";
    isStorePath =
      x:
      builtins.isString x
      && builtins.substring 0 (builtins.stringLength builtins.storeDir + 1) x
        == "${builtins.storeDir}/";

    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption =
      name:
      mkOption {
        type = types.bool;
        default = false;
        example = true;
        description = "Whether to enable ${name}.";
      };
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };
    literalExpression = text: {
      _type = "literalExpression";
      inherit text;
    };

    types = rec {
      mkType =
        {
          name,
          check,
          description ? name,
        }:
        {
          inherit name check description;
          _type = "option-type";
        };
      bool = mkType {
        name = "bool";
        check = builtins.isBool;
        description = "boolean";
      };
      str = mkType {
        name = "str";
        check = builtins.isString;
        description = "string";
      };
      int = mkType {
        name = "int";
        check = builtins.isInt;
        description = "signed integer";
      };
      ints.between =
        lowest: highest:
        mkType {
          name = "intBetween";
          check = x: builtins.isInt x && x >= lowest && x <= highest;
          description = "integer between ${toString lowest} and ${toString highest} (both inclusive)";
        };
      strMatching =
        pattern:
        mkType {
          name = "strMatching ${builtins.toJSON pattern}";
          check = x: builtins.isString x && builtins.match pattern x != null;
          description = "string matching the pattern ${pattern}";
        };
      package = mkType {
        name = "package";
        check = x: isDerivation x || isStorePath x;
        description = "package";
      };
      nullOr =
        elemType:
        mkType {
          name = "nullOr";
          check = x: x == null || elemType.check x;
          description = "null or ${elemType.description}";
        };
      listOf =
        elemType:
        mkType {
          name = "listOf";
          check = x: builtins.isList x && builtins.all elemType.check x;
          description = "list of ${elemType.description}";
        };
      nonEmptyListOf =
        elemType:
        mkType {
          name = "nonEmptyListOf";
          check = x: (listOf elemType).check x && x != [ ];
          description = "non-empty list of ${elemType.description}";
        };
      attrsOf =
        elemType:
        mkType {
          name = "attrsOf";
          check = x: builtins.isAttrs x && builtins.all elemType.check (builtins.attrValues x);
          description = "attribute set of ${elemType.description}";
        };
      # Stands in for submodules whose own options are not modelled (systemd units).
      anything = mkType {
        name = "anything";
        check = _: true;
        description = "anything";
      };
      # NixOS' `assertions` option: a list of { assertion : bool; message : str; }.
      assertion = mkType {
        name = "assertion";
        check =
          x:
          builtins.isAttrs x
          && builtins.isBool (x.assertion or null)
          && builtins.isString (x.message or null);
        description = "assertion";
      };
    };
  };

  inherit (lib) types mkOption;

  # Options of other NixOS modules that ours reads or defines, with their NixOS types.
  FOREIGN = {
    assertions = mkOption {
      type = types.listOf types.assertion;
      default = [ ];
    };
    systemd.services = mkOption {
      type = types.attrsOf types.anything;
      default = { };
    };
    systemd.timers = mkOption {
      type = types.attrsOf types.anything;
      default = { };
    };
    virtualisation.docker.autoPrune.enable = mkOption {
      type = types.bool;
      default = false;
    };
    # nixpkgs' node exporter (services.prometheus.exporters.node): what the module reads to
    # find the textfile collector's directory
    services.prometheus.exporters.node = {
      enable = mkOption {
        type = types.bool;
        default = false;
      };
      enabledCollectors = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      extraFlags = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
    };
  };

  isOption = x: builtins.isAttrs x && (x._type or null) == "option";
  isIf = x: builtins.isAttrs x && (x._type or null) == "if";

  # Merge two option trees (declarations); declaring the same option twice is an error.
  mergeDecls =
    prefix: a: b:
    builtins.foldl' (
      acc: name:
      let
        p = "${prefix}${name}";
      in
      if !(acc ? ${name}) then
        acc // { ${name} = b.${name}; }
      else if isOption acc.${name} || isOption b.${name} then
        throw "stand-in: the option `${p}' is declared twice"
      else
        acc // { ${name} = mergeDecls "${p}." acc.${name} b.${name}; }
    ) a (builtins.attrNames b);

  # Definitions of the option at `path` contained in `def` (a module's `config` or the
  # caller's settings). mkIf is pushed down: `mkIf c { a = x; }` at `a` is `mkIf c x`,
  # so the condition is forced only when the option's value is.
  defsAt =
    path: def:
    if path == [ ] then
      [ def ]
    else if isIf def then
      map (d: lib.mkIf def.condition d) (defsAt path def.content)
    else if builtins.isAttrs def && def ? ${builtins.head path} then
      defsAt (builtins.tail path) def.${builtins.head path}
    else
      [ ];

  # Resolve mkIf in a definition: `absent` when its condition is false (a real `null`
  # value stays a value). Nested mkIf inside a value (e.g. a whole unit under mkIf)
  # resolves recursively.
  absent = {
    _type = "absent";
  };
  isAbsent = x: builtins.isAttrs x && (x._type or null) == "absent";
  resolve =
    def:
    if isIf def then
      (if def.condition then resolve def.content else absent)
    else if builtins.isAttrs def && !(lib.isDerivation def) && !(def ? _type) then
      let
        resolved = builtins.mapAttrs (_: resolve) def;
      in
      removeAttrs resolved (builtins.filter (n: isAbsent resolved.${n}) (builtins.attrNames resolved))
    else
      def;

  mergeValues =
    loc: a: b:
    if builtins.isList a && builtins.isList b then
      a ++ b
    else if builtins.isAttrs a && builtins.isAttrs b && !(lib.isDerivation a) then
      builtins.foldl' (
        acc: n: acc // { ${n} = if acc ? ${n} then mergeValues "${loc}.${n}" acc.${n} b.${n} else b.${n}; }
      ) a (builtins.attrNames b)
    else if a == b then
      a
    else
      throw "stand-in: The option `${loc}' has conflicting definition values: ${builtins.toJSON a} and ${builtins.toJSON b}";

  optionValue =
    loc: opt: defs:
    let
      resolved = builtins.filter (d: !(isAbsent d)) (map resolve defs);
      value =
        if resolved == [ ] then
          (if opt ? default then opt.default else throw "stand-in: The option `${loc}' is used but not defined.")
        else
          builtins.foldl' (mergeValues loc) (builtins.head resolved) (builtins.tail resolved);
    in
    if resolved != [ ] && !(opt.type.check value) then
      throw "stand-in: A definition for option `${loc}' is not of type `${opt.type.description}'. Definition value: ${builtins.toJSON value}"
    else
      value;

  # Every defined path must lead to a declared option (NixOS: "The option ... does not exist").
  checkDefined =
    prefix: decls: def:
    if isIf def then
      checkDefined prefix decls def.content
    else if isOption decls then
      true
    else if !(builtins.isAttrs def) then
      throw "stand-in: `${prefix}' is not an option but an option set; it cannot be defined as a value"
    else
      builtins.all (
        n:
        if decls ? ${n} then
          checkDefined "${prefix}${n}." decls.${n} def.${n}
        else
          throw "stand-in: The option `${prefix}${n}' does not exist."
      ) (builtins.attrNames def);

  evalModule =
    {
      module,
      settings ? { },
      pkgs ? {
        callPackage = _: _: throw "stand-in: pkgs is not available; set the option explicitly";
      },
    }:
    let
      fn = if builtins.isPath module || builtins.isString module then import module else module;
      result = fn {
        inherit config lib pkgs;
        options = decls;
        utils = { };
        modulesPath = "/stand-in/nixos/modules";
      };
      moduleConfig = result.config or { };
      decls = mergeDecls "" FOREIGN (result.options or { });

      build =
        path: node:
        let
          loc = builtins.concatStringsSep "." path;
        in
        if isOption node then
          optionValue loc node (defsAt path settings ++ defsAt path moduleConfig)
        else
          builtins.mapAttrs (n: build (path ++ [ n ])) node;

      config = build [ ] decls;

      failed = builtins.filter (a: !a.assertion) config.assertions;
      checked =
        assert checkDefined "" decls settings;
        assert checkDefined "" decls moduleConfig;
        if failed != [ ] then
          throw "\nFailed assertions:\n${lib.concatMapStringsSep "\n" (a: "- ${a.message}") failed}"
        else
          config;
    in
    {
      config = checked;
      options = decls;
    };
in
{
  inherit lib evalModule;
}
