# A stub of nixpkgs as one maintained channel has it, for evaluating this
# repository's nixpkgs-facing files (nix/package.nix, nix/overlay.nix,
# flake.nix, default.nix, vmtests/default.nix) where there is no nixpkgs.
#
#   (import ./nixpkgs-stub.nix { channel = "nixos-unstable"; }).pkgs { system = "x86_64-linux"; overlays = [ ... ]; }
#
# It models only what those files touch, but models it as the channel does,
# failures included: end-of-life builders are aliases that throw, a package
# with known vulnerabilities or another platform refuses to give its drvPath,
# and runNixOSTest evaluates each node's modules against the options they set.
# Each fact names the nixpkgs file it mirrors.
{ channel }:

let
  # What differs between channels (as of December 2026): the default Go
  # and the versioned builders (pkgs/top-level/all-packages.nix), the Go
  # releases removed at end of life (pkgs/top-level/aliases.nix), and
  # garage's version, which only picks the replication setting
  # (nixos/tests/garage/basic.nix; nix/package_test.go also tries a 1.x).
  channels = {
    # nixos-25.11: Go 1.25 is the default (pkgs/top-level/all-packages.nix:
    # go = go_1_25; buildGoModule = buildGo125Module), 1.24 still there.
    "nixos-25.11" = {
      go = "1.25.4";
      builders = {
        buildGo124Module = "1.24.10";
        buildGo125Module = "1.25.4";
      };
      removed = [
        "1.22"
        "1.23"
      ];
      garage = "2.1.0";
    };
    # nixos-26.05: Go 1.26 is the default; 1.25 is still packaged, 1.24
    # removed at its end of life.
    "nixos-26.05" = {
      go = "1.26.3";
      builders = {
        buildGo125Module = "1.25.9";
        buildGo126Module = "1.26.3";
      };
      removed = [
        "1.22"
        "1.23"
        "1.24"
      ];
      garage = "2.2.0";
    };
    # nixos-unstable: Go 1.25 dropped at its end of life (nixpkgs PR 563177,
    # "go_1_25,buildGo125Module: drop", 2026-09-15).
    "nixos-unstable" = {
      go = "1.26.7";
      builders = {
        buildGo126Module = "1.26.7";
        buildGo127Module = "1.27.1";
      };
      removed = [
        "1.22"
        "1.23"
        "1.24"
        "1.25"
      ];
      garage = "2.2.0";
    };
  };
  ch = channels.${channel} or (throw "nixpkgs-stub: no channel ${channel}");

  lib = import ./nixpkgs-stub-lib.nix;

  # pkgs/stdenv/generic/check-meta.nix (assertValidity, checkValidity): a
  # package marked insecure (meta.knownVulnerabilities != [ ]) or not
  # available on the host platform (meta.platforms) is refused unless
  # config permits it; pkgs/stdenv/generic/make-derivation.nix hands the
  # result to lib.extendDerivation (lib/customisation.nix), which asserts it
  # when outPath or drvPath is evaluated: the package itself still evaluates,
  # its paths throw.
  validity =
    config: system: name: meta:
    let
      insecure = meta ? knownVulnerabilities && meta.knownVulnerabilities != [ ];
      unsupported = meta ? platforms && !(builtins.elem system meta.platforms);
      permittedInsecure =
        if config ? allowInsecurePredicate then
          config.allowInsecurePredicate { inherit name meta; }
        else
          builtins.elem name (config.permittedInsecurePackages or [ ]);
    in
    {
      inherit insecure unsupported;
      handled =
        if unsupported && !(config.allowUnsupportedSystem or false) then
          throw "Refusing to evaluate package '${name}' in «unknown-file» because it is not available on the requested hostPlatform:\n  hostPlatform.system = \"${system}\""
        else if insecure && !permittedInsecure then
          throw "Refusing to evaluate package '${name}' in «unknown-file» because it is marked as insecure"
        else
          true;
    };

  # stdenv.mkDerivation, as far as these files see it: name, meta with the
  # checks' results, passthru, overrideAttrs, and store paths that exist
  # only once the checks pass.
  mkDerivationWith =
    config: system:
    let
      self =
        attrs:
        let
          name = attrs.name or "${attrs.pname}-${attrs.version}";
          meta = attrs.meta or { };
          v = validity config system name meta;
          # As `derivation` coerces its attributes: an input's drvPath (so
          # a refused input makes this one throw too), paths by name.
          coerce =
            v:
            if builtins.isAttrs v then
              (if v ? drvPath then v.drvPath else builtins.mapAttrs (_: coerce) v)
            else if builtins.isList v then
              map coerce v
            else if builtins.isPath v then
              toString v
            else if builtins.isFunction v then
              null
            else
              v;
          hash = builtins.hashString "sha256" (builtins.toJSON (coerce (builtins.removeAttrs attrs [ "passthru" ])));
          drv = {
            outPath = "/nix/store/${builtins.substring 0 32 hash}-${name}";
            drvPath = "/nix/store/${builtins.substring 32 32 hash}-${name}.drv";
          };
        in
        builtins.removeAttrs attrs [ "passthru" ]
        // (attrs.passthru or { })
        // {
          type = "derivation";
          inherit name system;
          meta = meta // {
            inherit (v) insecure unsupported;
          };
          overrideAttrs =
            f: self (attrs // (if builtins.isFunction (f attrs) then f attrs attrs else f attrs));
        }
        // lib.extendDerivation v.handled { } drv;
    in
    self;

  # pkgs/top-level/aliases.nix: a Go builder and Go removed at end of life
  # stay as aliases that throw (while config.allowAliases, the default).
  goAliases = builtins.listToAttrs (
    builtins.concatMap (
      v:
      let
        n = builtins.replaceStrings [ "." ] [ "" ] v;
        u = builtins.replaceStrings [ "." ] [ "_" ] v;
      in
      [
        {
          name = "buildGo${n}Module";
          value = throw "Go ${v} is end-of-life, and 'buildGo${n}Module' has been removed. Please use a newer builder version.";
        }
        {
          name = "go_${u}";
          value = throw "Go ${v} is end-of-life, and 'go_${u}' has been removed. Please use a newer version.";
        }
      ]
    ) ch.removed
  );

  basePkgs =
    {
      system,
      config,
    }:
    final:
    let
      mkDerivation = mkDerivationWith config system;
      mkGo =
        version:
        mkDerivation {
          pname = "go";
          inherit version;
          meta.platforms = lib.platforms.linux ++ lib.platforms.darwin;
        };
      # pkgs/build-support/go/module.nix: vendorHash required, the Go in
      # passthru (`.go`), meta.platforms defaulting to Go's; since 25.05 a
      # top-level CGO_ENABLED is refused in favour of env.CGO_ENABLED.
      mkBuildGoModule =
        go:
        lib.setFunctionArgs (
          args:
          if args ? CGO_ENABLED then
            throw "buildGoModule: set env.CGO_ENABLED, not CGO_ENABLED"
          else if !(args ? vendorHash) then
            throw "buildGoModule: vendorHash is missing"
          else
            mkDerivation (
              args
              // {
                passthru = (args.passthru or { }) // {
                  inherit go;
                  inherit (args) vendorHash;
                };
                meta = {
                  platforms = go.meta.platforms;
                }
                // (args.meta or { });
              }
            )
        ) { env = true; vendorHash = false; pname = false; version = false; };
      namedBuilders = builtins.mapAttrs (_: v: mkBuildGoModule (mkGo v)) ch.builders;
    in
    namedBuilders
    // {
      inherit lib system config;
      path = ./.;
      callPackage = lib.callPackageWith final;
      stdenv = {
        inherit mkDerivation;
        buildPlatform.system = system;
        hostPlatform.system = system;
      };
      # Native builds: the build platform's packages are these.
      buildPackages = final;

      go = mkGo ch.go;
      buildGoModule = mkBuildGoModule final.go;

      hello = mkDerivation {
        pname = "hello";
        version = "2.12.2";
      };
      curl = mkDerivation {
        pname = "curl";
        version = "8.17.0";
      };
      gopls = mkDerivation {
        pname = "gopls";
        version = "0.21.0";
      };
      go-tools = mkDerivation {
        pname = "go-tools";
        version = "2026.1";
      };
      nix = mkDerivation {
        pname = "nix";
        version = "2.31.2";
      };
      # The garage package nixos/tests/garage/default.nix runs the module
      # with (its `package` argument).
      garage = mkDerivation {
        pname = "garage";
        version = ch.garage;
        meta.mainProgram = "garage";
      };
      # MinIO is abandoned upstream and nixpkgs marks it insecure
      # (meta.knownVulnerabilities), so check-meta refuses it.
      minio = mkDerivation {
        pname = "minio";
        version = "2025-10-15T17-29-55Z";
        meta.knownVulnerabilities = [ "MinIO is unmaintained upstream" ];
      };
      # Its client, which nixos/tests/garage/default.nix still installs.
      minio-client = mkDerivation {
        pname = "minio-client";
        version = "2025-08-13T08-35-41Z";
      };
      runtimeShell = "${final.bash}/bin/bash";
      bash = mkDerivation {
        pname = "bash";
        version = "5.3p3";
      };

      # pkgs/build-support/trivial-builders/default.nix
      runCommand =
        name: env: buildCommand:
        mkDerivation (env // { inherit name buildCommand; });
      writeText =
        name: text:
        mkDerivation {
          inherit name text;
        };
      writeScript =
        name: text:
        mkDerivation {
          inherit name text;
          executable = true;
        };
      writeScriptBin =
        name: text:
        mkDerivation {
          inherit name text;
          executable = true;
          destination = "/bin/${name}";
        };
      # pkgs/build-support/mkshell/default.nix: packages are inputs of a
      # derivation, so their drvPaths are evaluated.
      mkShell =
        args:
        mkDerivation {
          name = args.name or "nix-shell";
          nativeBuildInputs = map (p: p.drvPath) (args.packages or [ ]);
        };
      formats.toml = _: {
        type = "toml";
        generate = name: value: mkDerivation {
          inherit name;
          value = builtins.toJSON value;
        };
      };

      testers.runNixOSTest = import ./nixos-test-stub.nix {
        inherit lib;
        pkgs = final;
      };

      # nixos/tests/all-tests.nix: binary-cache, -xz and -no-compression run
      # nixos/tests/binary-cache.nix with _module.args.compression; the node
      # builds `pkgs.mkBinaryCache { rootPaths = [ hello ]; compression; }`
      # in its test script with <nixpkgs>, the overlaid package set
      # (nixos/lib/testing/nodes.nix: node.pkgs).
      nixosTests = builtins.mapAttrs (
        name: compression:
        final.testers.runNixOSTest {
          inherit name;
          nodes.machine =
            { pkgs, ... }:
            {
              environment.systemPackages = [ pkgs.python3 ];
              system.extraDependencies = [ pkgs.hello ];
              nix.extraOptions = "experimental-features = nix-command";
              # What the test script's nix-build evaluates on the machine.
              environment.etc."binary-cache-under-test".source = pkgs.mkBinaryCache {
                rootPaths = [ pkgs.hello ];
                inherit compression;
              };
            };
          testScript = "machine.succeed(\"nix-build --no-out-link -E 'with import <nixpkgs> {}; mkBinaryCache { rootPaths = [hello]; compression = \\\"${compression}\\\"; }'\")";
        }
      ) {
        binary-cache = "zstd";
        binary-cache-xz = "xz";
        binary-cache-no-compression = "none";
      };
      python3 = mkDerivation {
        pname = "python3";
        version = "3.13.9";
      };
    };

  # pkgs/top-level/default.nix and stage.nix: the base set, then the
  # aliases (allowAliases), then the caller's overlays, each seeing the
  # final set.
  # pkgs.extend re-runs the fixed point with one more overlay.
  pkgs =
    {
      system ? builtins.currentSystem,
      overlays ? [ ],
      config ? { },
      ...
    }@args:
    let
      layers = [
        (final: prev: (if config.allowAliases or true then goAliases else { }))
      ]
      ++ overlays
      ++ [ (final: prev: { extend = f: pkgs (args // { overlays = overlays ++ [ f ]; }); }) ];
    in
    lib.fix (lib.foldl' (acc: o: lib.extends o acc) (basePkgs { inherit system config; }) layers);
in
{
  inherit lib pkgs;
}
