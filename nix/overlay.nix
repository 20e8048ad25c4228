# Adds `mkbinarycache` (the builder) and a `mkBinaryCache` that shadows
# nixpkgs' own one (same arguments, plus the extensions of ./default.nix).
final: prev: {
  mkbinarycache = final.callPackage ./package.nix { };

  # The builder runs where the cache is built: the build platform.
  inherit
    (import ./. {
      builder = final.buildPackages.mkbinarycache;
      system = final.stdenv.buildPlatform.system;
    })
    mkBinaryCache
    ;
}
