# Without flakes:
#   nix-build -A mkbinarycache                        the builder
#   nix-build -A example                              a binary cache of hello
#   nix-build -A tests.zstd                           a NixOS VM test (also xz, bzip2, none)
#   nix-build -A nixpkgsTests.binary-cache            nixpkgs' own test, run on our mkBinaryCache
#                                                     (also binary-cache-xz, binary-cache-no-compression)
# and, in your own expressions, (import ./. { inherit pkgs; }).mkBinaryCache { rootPaths = [ ... ]; }.
# For a mkBinaryCache that needs no nixpkgs at all, see ./nix/default.nix.
{
  pkgs ? import <nixpkgs> { },
}:

let
  pkgs' = pkgs.extend (import ./nix/overlay.nix);
in
{
  inherit (pkgs') mkbinarycache mkBinaryCache;

  overlay = import ./nix/overlay.nix;

  example = pkgs'.mkBinaryCache { rootPaths = [ pkgs'.hello ]; };

  tests = import ./vmtests { pkgs = pkgs'; };

  # nixpkgs' tests of its mkBinaryCache, evaluated on the overlaid package set:
  # their nodes take mkBinaryCache from it, so nixpkgs' exact assertions run
  # against ours.
  nixpkgsTests = {
    inherit (pkgs'.nixosTests) binary-cache binary-cache-xz binary-cache-no-compression;
  };
}
