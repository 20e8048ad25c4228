# Adds `mkbinarycache` (the builder) and a `mkBinaryCache` that shadows
# nixpkgs' own one: same arguments, defaults and callPackage shape
# (`lib.functionArgs pkgs.mkBinaryCache` has `rootPaths` required, `name` and
# `compression` optional; `.override` replaces what it is made of), plus the
# extensions of ./default.nix.
final: prev: {
  mkbinarycache = final.callPackage ./package.nix { };

  mkBinaryCache = final.callPackage (
    {
      lib,
      stdenv,
      # The builder runs where the cache is built: the build platform.
      # `mkBinaryCache.override { mkbinarycache = ...; }` swaps it.
      mkbinarycache,
    }:
    let
      inherit
        (import ./. {
          builder = mkbinarycache;
          system = stdenv.buildPlatform.system;
        })
        mkBinaryCache
        ;
    in
    # ./default.nix gives `rootPaths` a null default only to name the missing
    # argument in its error; to callers it is as required as in nixpkgs.
    lib.setFunctionArgs mkBinaryCache (lib.functionArgs mkBinaryCache // { rootPaths = false; })
  ) { mkbinarycache = final.buildPackages.mkbinarycache; };
}
