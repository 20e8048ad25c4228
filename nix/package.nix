# The builder binary, for nixpkgs' callPackage:
#
#   mkbinarycache = pkgs.callPackage ./nix/package.nix { };
#
# A static Go binary (CGO_ENABLED=0): it runs as the builder of mkBinaryCache
# derivations, where nothing but its own closure is available.
{
  lib,
  go,
  buildGoModule,
  # Used only when nixpkgs' default Go is older than go.mod's `go` line:
  # buildGoModule is Go 1.25 on nixos-25.11 and Go 1.26 on nixos-26.05 and
  # nixos-unstable, which also have these two.
  buildGo125Module ? null,
  buildGo126Module ? null,
}:

let
  version = "0.1.0";

  # The `go` line of go.mod as major.minor, e.g. "1.25" for `go 1.25.0`.
  goModVersion =
    let
      m = builtins.match ".*\ngo ([0-9]+\\.[0-9]+)[.0-9]*\n.*" ("\n" + builtins.readFile ../go.mod);
    in
    if m == null then throw "mkbinarycache: no `go` line in go.mod" else builtins.head m;

  # nixpkgs' default builder when its Go is new enough (as nixpkgs' own
  # packages do), else the oldest named one that is. buildGoModule sets
  # GOTOOLCHAIN=local, so an older Go would refuse go.mod outright.
  candidates = [
    {
      builder = buildGoModule;
      goVersion = go.version;
    }
    {
      builder = buildGo125Module;
      goVersion = "1.25";
    }
    {
      builder = buildGo126Module;
      goVersion = "1.26";
    }
  ];
  usable = builtins.filter (
    c: c.builder != null && lib.versionAtLeast (lib.versions.majorMinor c.goVersion) goModVersion
  ) candidates;
  buildGo =
    if usable == [ ] then
      throw "mkbinarycache: go.mod asks for Go ${goModVersion}, but this nixpkgs has Go ${go.version} and neither buildGo125Module nor buildGo126Module"
    else
      (builtins.head usable).builder;

  # buildGoModule up to nixpkgs 24.11 took CGO_ENABLED as an argument; later
  # ones read env.CGO_ENABLED and refuse a top-level one.
  cgoOff =
    if (lib.functionArgs buildGo) ? CGO_ENABLED then
      { CGO_ENABLED = 0; }
    else
      { env.CGO_ENABLED = 0; };

  # Go sources and their test fixtures; no stray test binaries or profiles.
  sources = dir: lib.fileset.fileFilter (file: !(file.hasExt "test" || file.hasExt "prof")) dir;
in
buildGo (
  {
    pname = "mkbinarycache";
    inherit version;

    # The program (builder/) and what its tests import (internal/, testdata/).
    src = lib.fileset.toSource {
      root = ../.;
      fileset = lib.fileset.unions (
        [
          ../go.mod
          ../go.sum
          (sources ../builder)
          (lib.fileset.maybeMissing ../testdata)
        ]
        ++ lib.optional (builtins.pathExists ../internal) (sources ../internal)
      );
    };

    # The NAR hash of the `vendor` directory that `go mod vendor` makes from
    # go.mod, go.sum and the imports of the sources above (tests included).
    # It changes whenever go.mod, go.sum or the set of imported packages does;
    # nix/nix_test.go's TestVendorHash recomputes it and names the new value.
    vendorHash = "sha256-w6NTH/4eg3P/e+FdnN+VZAwqC3gATDb+KDmkpqudEfE=";

    subPackages = [ "builder/cmd/mkbinarycache" ];

    ldflags = [
      "-s"
      "-w"
      "-X main.version=${version}"
    ];

    # buildGoModule would test subPackages only. Test every package of the
    # program instead: the sandbox has no Nix, so the tests that need one skip
    # (nixtest.Require), and -short skips the long ones; the rest needs only
    # Go and stdenv's tools (nix/package_test.go runs this very command with
    # no Nix, no network and a non-root user).
    checkPhase = ''
      runHook preCheck
      # As buildGoModule's own check phase: no -trimpath, so tests find their files.
      export GOFLAGS=''${GOFLAGS//-trimpath/}
      go test -short -vet=off -p "$NIX_BUILD_CORES" ./builder/...
      runHook postCheck
    '';

    meta = {
      description = "Builder that turns a closure into a flat-file Nix binary cache (drop-in for pkgs.mkBinaryCache)";
      license = lib.licenses.mit;
      mainProgram = "mkbinarycache";
      platforms = lib.platforms.unix;
    };
  }
  // cgoOff
)
