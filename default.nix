# Without flakes:
#   nix-build -A mkbinarycache          the builder
#   nix-build -A example                a binary cache of hello
#   nix-build -A tests.zstd             a NixOS VM test (also xz, bzip2, none)
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
}
