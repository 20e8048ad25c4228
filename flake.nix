{
  description = "mkbinarycache: a fast, static builder for flat-file Nix binary caches (drop-in pkgs.mkBinaryCache)";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f (pkgsFor system));
      pkgsFor =
        system:
        import nixpkgs {
          inherit system;
          overlays = [ self.overlays.default ];
        };
    in
    {
      overlays.default = import ./nix/overlay.nix;

      lib = {
        # mkBinaryCache with this flake's builder, e.g. lib.mkBinaryCacheFor "x86_64-linux" { rootPaths = [ ... ]; }
        mkBinaryCacheFor = system: (pkgsFor system).mkBinaryCache;
        # The nixpkgs-free one: (lib.withBuilder { builder = <dir with bin/mkbinarycache>; system = ...; }).mkBinaryCache
        withBuilder = import ./nix;
      };

      packages = forAllSystems (pkgs: {
        default = pkgs.mkbinarycache;
        inherit (pkgs) mkbinarycache;
        example = pkgs.mkBinaryCache { rootPaths = [ pkgs.hello ]; };
      });

      checks = forAllSystems (
        pkgs:
        {
          inherit (pkgs) mkbinarycache;
          example = pkgs.mkBinaryCache { rootPaths = [ pkgs.hello ]; };
        }
        // nixpkgs.lib.mapAttrs' (name: test: nixpkgs.lib.nameValuePair "vm-${name}" test) (
          import ./vmtests { inherit pkgs; }
        )
        # nixpkgs' own tests of mkBinaryCache (nixos/tests/binary-cache.nix),
        # taken from the overlaid package set: their nodes build the cache with
        # our mkBinaryCache, and nixpkgs' exact assertions judge it.
        // nixpkgs.lib.mapAttrs' (name: test: nixpkgs.lib.nameValuePair "nixpkgs-${name}" test) {
          inherit (pkgs.nixosTests) binary-cache binary-cache-xz binary-cache-no-compression;
        }
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            pkgs.mkbinarycache.go # the Go that builds the package
            pkgs.gopls
            pkgs.go-tools # staticcheck
            pkgs.nix
          ];
        };
      });
    };
}
