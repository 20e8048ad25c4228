# pkgs.testers.runNixOSTest, as far as it can be had without nixpkgs:
# pkgs/build-support/testers/default.nix calls nixos/lib's runTest with
# node.pkgs = pkgs (nixos/lib/testing/nodes.nix), so every node gets the
# caller's package set. Here each node's modules are evaluated against the
# options they set: an option that does not exist, a value of the wrong type
# or an enabled service missing a required option fails the evaluation, as
# lib/modules.nix would. The options are the ones the NixOS modules named
# below declare (only those the tests here use: a module or option missing
# from this table is an error, never silently accepted). The test's result
# is a derivation whose drvPath needs every node's system closure, so a
# package check-meta refuses makes it throw, as the real system build does.
{ lib, pkgs }:

let
  # Option types (lib/types.nix): a check and a description for errors.
  t = {
    bool = {
      check = builtins.isBool;
      name = "boolean";
    };
    int = {
      check = builtins.isInt;
      name = "signed integer";
    };
    port = {
      check = v: builtins.isInt v && v >= 0 && v < 65536;
      name = "16 bit unsigned integer";
    };
    str = {
      check = builtins.isString;
      name = "string";
    };
    lines = {
      check = builtins.isString;
      name = "strings concatenated with \"\\n\"";
    };
    # types.path: an absolute path or a string that is one (a store path).
    path = {
      check = v: builtins.isPath v || (builtins.isString v && lib.hasPrefix "/" v) || (builtins.isAttrs v && v ? outPath);
      name = "absolute path";
    };
    package = {
      check = v: (builtins.isAttrs v && v.type or null == "derivation") || (builtins.isString v && lib.hasPrefix "/nix/store/" v);
      name = "package";
    };
    listOf = e: {
      check = v: builtins.isList v && builtins.all e.check v;
      name = "list of ${e.name}";
    };
    attrsOf = e: {
      check = v: builtins.isAttrs v && builtins.all e.check (builtins.attrValues v);
      name = "attribute set of ${e.name}";
    };
    nullOr = e: {
      check = v: v == null || e.check v;
      name = "null or ${e.name}";
    };
    either = a: b: {
      check = v: a.check v || b.check v;
      name = "${a.name} or ${b.name}";
    };
    enum = l: {
      check = v: builtins.elem v l;
      name = "one of ${builtins.concatStringsSep ", " (map builtins.toJSON l)}";
    };
    # Whatever a freeform settings attribute set or pkgs.formats.toml takes:
    # no nulls, no functions (TOML has neither).
    toml = {
      check =
        let
          ok =
            v:
            if builtins.isAttrs v then
              builtins.all ok (builtins.attrValues v)
            else if builtins.isList v then
              builtins.all ok v
            else
              !(v == null || builtins.isFunction v);
        in
        ok;
      name = "TOML value";
    };
    anything = {
      check = _: true;
      name = "anything";
    };
  };

  # An option: { _option = type; } and, for a required one, no default.
  opt = type: { _option = type; };
  # attrsOf (submodule { options }): each attribute checked against `options`.
  sub = options: { _submodule = options; };
  # A freeform submodule: declared options checked, any other attribute of
  # the freeform type.
  freeform = type: options: {
    _freeform = type;
    _submodule = options;
  };

  options = {
    # nixos/modules/config/system-path.nix
    environment.systemPackages = opt (t.listOf t.package);
    # nixos/modules/system/etc/etc.nix
    environment.etc = sub {
      source = opt t.path;
      text = opt (t.nullOr t.lines);
      mode = opt t.str;
      enable = opt t.bool;
      target = opt t.str;
    };
    # nixos/modules/system/activation/top-level.nix
    system.extraDependencies = opt (t.listOf t.package);
    # nixos/modules/virtualisation/qemu-vm.nix
    virtualisation = {
      additionalPaths = opt (t.listOf t.package);
      memorySize = opt t.int;
      diskSize = opt (t.nullOr t.int);
      cores = opt t.int;
      useNixStoreImage = opt t.bool;
      writableStore = opt t.bool;
    };
    # nixos/modules/services/web-servers/nginx/default.nix and vhost-options.nix
    services.nginx = {
      enable = opt t.bool;
      virtualHosts = sub {
        default = opt t.bool;
        root = opt (t.nullOr t.path);
        serverName = opt (t.nullOr t.str);
      };
    };
    # nixos/modules/services/web-servers/garage.nix: package has no default
    # ("needs to be set explicitly"); settings is a freeform TOML submodule
    # declaring metadata_dir and data_dir.
    services.garage = {
      enable = opt t.bool;
      package = opt t.package;
      environmentFile = opt (t.nullOr t.path);
      extraEnvironment = opt (t.attrsOf t.str);
      logLevel = opt (
        t.enum [
          "error"
          "warn"
          "info"
          "debug"
          "trace"
        ]
      );
      settings = freeform t.toml {
        metadata_dir = opt t.path;
        data_dir = opt (t.either t.path (t.listOf t.anything));
      };
    };
    # nixos/modules/services/networking/ssh/sshd.nix
    services.openssh.enable = opt t.bool;
    # nixos/modules/services/networking/firewall.nix
    networking.firewall.allowedTCPPorts = opt (t.listOf t.port);
    # nixos/modules/system/boot/systemd/tmpfiles.nix
    systemd.tmpfiles.rules = opt (t.listOf t.str);
    # nixos/modules/system/boot/systemd.nix with lib/systemd-unit-options.nix
    systemd.services = sub {
      environment = opt (t.attrsOf (t.either t.str (t.either t.path t.package)));
      serviceConfig = opt (t.attrsOf t.anything);
      wantedBy = opt (t.listOf t.str);
      after = opt (t.listOf t.str);
    };
    # nixos/modules/config/nix.nix: settings is a freeform submodule.
    nix.settings = freeform t.anything {
      substituters = opt (t.listOf t.str);
      max-jobs = opt (t.either t.int (t.enum [ "auto" ]));
      trusted-public-keys = opt (t.listOf t.str);
    };
    nix.extraOptions = opt t.lines;
  };

  # A definition's value without its mkForce/mkDefault/mkIf wrapper
  # (lib/modules.nix); a false mkIf defines nothing.
  unwrap =
    v:
    if builtins.isAttrs v && v ? _type then
      if v._type == "override" then
        unwrap v.content
      else if v._type == "if" then
        (if v.condition then unwrap v.content else null)
      else
        v
    else
      v;

  # Checks one node's merged definitions against `options`; returns them
  # unwrapped, or throws as lib/modules.nix does.
  check =
    loc: decl: value:
    let
      v = unwrap value;
      where = builtins.concatStringsSep "." loc;
    in
    if v == null && builtins.isAttrs value && value._type or null == "if" then
      null
    else if decl ? _option then
      if decl._option.check v then
        v
      else
        throw "A definition for option `${where}' is not of type `${decl._option.name}'."
    else if decl ? _submodule && !(decl ? _freeform) then
      if !builtins.isAttrs v then
        throw "A definition for option `${where}' is not of type `attribute set of (submodule)'."
      else
        builtins.mapAttrs (n: x: checkAttrs (loc ++ [ n ]) decl._submodule x) v
    else if decl ? _freeform then
      builtins.mapAttrs (
        n: x:
        if decl._submodule ? ${n} then
          check (loc ++ [ n ]) decl._submodule.${n} x
        else if decl._freeform.check (unwrap x) then
          unwrap x
        else
          throw "A definition for option `${where}.${n}' is not of type `${decl._freeform.name}'."
      ) v
    else
      checkAttrs loc decl v;

  checkAttrs =
    loc: decl: v:
    if !builtins.isAttrs v then
      throw "A definition for option `${builtins.concatStringsSep "." loc}' is not of type `attribute set'."
    else
      builtins.mapAttrs (
        n: x:
        if decl ? ${n} then
          check (loc ++ [ n ]) decl.${n} x
        else
          throw "The option `${builtins.concatStringsSep "." (loc ++ [ n ])}' does not exist."
      ) v;

  # Merges a node's modules (with their imports) as lib/modules.nix does for
  # these types: lists concatenate, attribute sets merge, other values must
  # agree unless one has a higher priority (mkForce).
  merge =
    loc: a: b:
    let
      prio = v: if builtins.isAttrs v && v._type or null == "override" then v.priority else 100;
      ua = unwrap a;
      ub = unwrap b;
    in
    if builtins.isList ua && builtins.isList ub then
      (if prio a != prio b then (if prio a < prio b then a else b) else ua ++ ub)
    else if builtins.isAttrs ua && builtins.isAttrs ub && !(ua ? outPath) && !(ub ? outPath) then
      builtins.zipAttrsWith (n: vs: builtins.foldl' (merge (loc ++ [ n ])) (builtins.head vs) (builtins.tail vs)) [
        ua
        ub
      ]
    else if prio a != prio b then
      (if prio a < prio b then a else b)
    else if ua == ub then
      a
    else
      throw "The option `${builtins.concatStringsSep "." loc}' has conflicting definition values.";

  moduleArgs = nodeName: {
    inherit lib pkgs;
    name = nodeName;
    config = throw "nixos-test-stub: the modules here read no `config`";
    nodes = throw "nixos-test-stub: the modules here read no `nodes`";
    modulesPath = "/nixpkgs/nixos/modules";
  };

  # A module and its imports, as a list of attribute sets.
  collect =
    nodeName: m:
    let
      v = if builtins.isFunction m then m (moduleArgs nodeName) else if builtins.isPath m then import m (moduleArgs nodeName) else m;
      own = builtins.removeAttrs v [ "imports" ];
    in
    builtins.concatMap (collect nodeName) (v.imports or [ ]) ++ [ own ];

  evalNode =
    nodeName: module:
    let
      defs = collect nodeName module;
      merged = builtins.foldl' (merge [ ]) { } defs;
      cfg = checkAttrs [ ] options merged;
      garage = cfg.services.garage or { };
      garageOn = garage.enable or false;
    in
    # nixos/modules/misc/nixpkgs/read-only.nix: with node.pkgs set, the
    # nixpkgs.* options are read-only.
    if merged ? nixpkgs then
      throw "The option `nixpkgs' is read-only: runNixOSTest gives every node the caller's pkgs."
    else
      cfg
      // {
        # garage.nix's config: the package (required, no default) in
        # systemPackages via a wrapper, the settings as /etc/garage.toml.
        _closure =
          (cfg.environment.systemPackages or [ ])
          ++ (cfg.virtualisation.additionalPaths or [ ])
          ++ (cfg.system.extraDependencies or [ ])
          ++ builtins.filter (s: builtins.isAttrs s && s.type or null == "derivation") (
            map (e: e.source or null) (builtins.attrValues (cfg.environment.etc or { }))
          )
          ++ lib.optionals garageOn [
            (
              if garage ? package then
                garage.package
              else
                throw "The option `services.garage.package' was accessed but has no value defined. Try setting the option."
            )
            ((pkgs.formats.toml { }).generate "garage.toml" (garage.settings or { }))
          ];
      };

  runNixOSTest =
    test:
    let
      tm = if builtins.isFunction test then test { inherit pkgs lib; } else test;
      nodes = builtins.mapAttrs evalNode (tm.nodes or { });
      testScript = if builtins.isFunction tm.testScript then tm.testScript { inherit nodes; } else tm.testScript;
      name = tm.name or (throw "The option `name' was accessed but has no value defined. Try setting the option.");
      closure = builtins.concatMap (n: map (p: if builtins.isAttrs p then p.drvPath else p) n._closure) (builtins.attrValues nodes);
    in
    assert builtins.isString testScript;
    pkgs.stdenv.mkDerivation {
      name = "vm-test-run-${name}";
      inherit testScript;
      nodeClosures = builtins.deepSeq nodes closure;
      passthru = {
        inherit nodes;
        config = {
          inherit name testScript;
        };
        driverInteractive = pkgs.stdenv.mkDerivation { name = "nixos-test-driver-${name}"; };
      };
    };
in
runNixOSTest
