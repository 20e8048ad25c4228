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
}:

let
  version = "0.1.0";

  # The `go` line of go.mod as major.minor, e.g. "1.25" for `go 1.25.0`.
  goModVersion =
    let
      m = builtins.match ".*\ngo ([0-9]+\\.[0-9]+)[.0-9]*\n.*" ("\n" + builtins.readFile ../go.mod);
    in
    if m == null then throw "mkbinarycache: no `go` line in go.mod" else builtins.head m;

  # nixpkgs' default buildGoModule, as nixpkgs' own packages use: its Go
  # satisfies go.mod on every maintained channel. No versioned builder
  # (buildGo125Module, ...) is named: nixpkgs turns those into aliases that
  # throw once their Go is end-of-life (pkgs/top-level/aliases.nix), and
  # callPackage would hand the throwing value to any function that named one.
  # buildGoModule sets GOTOOLCHAIN=local, so an older Go would only fail at
  # build time; say so at evaluation time instead.
  buildGo =
    if lib.versionAtLeast (lib.versions.majorMinor go.version) goModVersion then
      buildGoModule
    else
      throw "mkbinarycache: go.mod asks for Go ${goModVersion}, but this nixpkgs' buildGoModule has Go ${go.version}; use nixos-25.11 or newer";

  # Go sources and their test fixtures; no stray test binaries or profiles.
  sources = dir: lib.fileset.fileFilter (file: !(file.hasExt "test" || file.hasExt "prof")) dir;
in
buildGo {
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
  vendorHash = "sha256-5aQ8xyd+9AW5QX50gXvug54Y8f6g3HLB/2AJoJ26swg=";

  subPackages = [ "builder/cmd/mkbinarycache" ];

  # Static: the builder of mkBinaryCache derivations has nothing but its own
  # closure. buildGoModule reads env.CGO_ENABLED (a top-level one is refused).
  env.CGO_ENABLED = 0;

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
    platforms = lib.platforms.linux;
  };
}
