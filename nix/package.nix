# The builder binary, for nixpkgs' callPackage:
#
#   mkbinarycache = pkgs.callPackage ./nix/package.nix { };
#
# A static Go binary (no cgo): it runs as the builder of mkBinaryCache
# derivations, where nothing but its own closure is available.
{
  lib,
  go,
  buildGoModule,
  # go.mod may ask for a newer Go than nixpkgs' default one; then this one is used.
  buildGo126Module ? null,
}:

let
  version = "0.1.0";

  # The `go` directive of go.mod, e.g. "1.26".
  goModVersion =
    let
      m = builtins.match ".*\ngo ([0-9.]+)\n.*" ("\n" + builtins.readFile ../go.mod);
    in
    if m == null then "0" else builtins.head m;

  buildGo =
    if lib.versionAtLeast go.version goModVersion then
      buildGoModule
    else if buildGo126Module != null then
      buildGo126Module
    else
      throw "mkbinarycache: go.mod asks for Go ${goModVersion}, but this nixpkgs has Go ${go.version} and no buildGo126Module";

  # Older buildGoModule took CGO_ENABLED as an argument; newer ones read env.CGO_ENABLED
  # and refuse a top-level one.
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

    # The NAR hash of the `vendor` directory that `go mod vendor` makes from go.mod,
    # go.sum and the imports of the source (tests included). It changes whenever
    # go.mod, go.sum or the set of imported packages does: recompute it then with
    #   d=$(mktemp -d) && cp -r go.mod go.sum builder internal "$d" \
    #     && (cd "$d" && go mod vendor) && nix hash path --type sha256 "$d/vendor"
    # (Nix 2.8's nix-hash has no --sri; `nix hash path` prints SRI), or set
    # lib.fakeHash and copy the hash the failing build reports.
    # COMPUTED on 2026-11-23 from the work tree as it was then (builder still
    # being written): expect to recompute it before the first release.
    vendorHash = "sha256-rH7B+fqHEHKhWy07W8COhCq3JVZllw2hcumUrkdz5Wg=";

    subPackages = [ "builder/cmd/mkbinarycache" ];

    ldflags = [
      "-s"
      "-w"
      "-X main.version=${version}"
    ];

    # The sandbox has no Nix: tests that need one are expected to skip under -short.
    checkFlags = [ "-short" ];

    meta = {
      description = "Builder that turns a closure into a flat-file Nix binary cache (drop-in for pkgs.mkBinaryCache)";
      license = lib.licenses.mit;
      mainProgram = "mkbinarycache";
      platforms = lib.platforms.unix;
    };
  }
  // cgoOff
)
