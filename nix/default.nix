# mkBinaryCache without nixpkgs: builtins only, so it evaluates with plain Nix.
#
#   let
#     cacheLib = import ./nix { builder = mkbinarycache; };   # or builtins.path { path = ./dir; }
#   in
#   cacheLib.mkBinaryCache { rootPaths = [ hello ]; }
#
# `builder` is anything with `${builder}/bin/mkbinarycache` being the static
# (CGO_ENABLED=0) builder binary: a package (nix/package.nix) or a
# `builtins.path` import of a directory holding bin/mkbinarycache.
#
# The arguments of nixpkgs' `pkgs.mkBinaryCache` (`rootPaths`, `name`,
# `compression`) keep their names, defaults and meaning; everything else is an
# optional extension. The result is a plain `derivation` (no stdenv, no shell):
# the builder reads its structured attrs (`.attrs.json`) directly.
{
  builder,
  system ? builtins.currentSystem,
}:

let
  compressions = [
    "none"
    "xz"
    "bzip2"
    "zstd"
  ];

  # The levels the builder accepts (mkbinarycache --help).
  levels = {
    zstd = {
      min = 1;
      max = 22;
    };
    xz = {
      min = 0;
      max = 9;
    };
    bzip2 = {
      min = 1;
      max = 9;
    };
  };

  quote = s: "\"${s}\"";
  showList = l: builtins.concatStringsSep ", " (map quote l);

  # A short description of a value for error messages.
  describe =
    v:
    let
      t = builtins.typeOf v;
    in
    if t == "string" then
      "the string ${quote v}"
    else if t == "int" || t == "float" then
      "the ${t} ${toString v}"
    else if t == "bool" then
      "the bool ${if v then "true" else "false"}"
    else if t == "null" then
      "null"
    else if t == "set" then
      (if v ? type && v.type == "derivation" then "a derivation" else "an attribute set")
    else if t == "list" then
      "a list"
    else if t == "path" then
      "the path ${toString v}"
    else if t == "lambda" then
      "a function"
    else
      "a value of type ${t}";

  fail = msg: throw "mkBinaryCache: ${msg}";

  # `check cond msg value`: value if cond, else throw msg.
  check =
    cond: msg: value:
    if cond then value else fail msg;

  isDerivationLike = v: builtins.isAttrs v && v ? outPath;

  # rootPaths elements: derivations (anything with outPath), store paths as
  # strings (with context), or Nix paths (copied to the store).
  validRoot = v: isDerivationLike v || builtins.isString v || builtins.isPath v;

  # A string with no string context names no input of the derivation, so Nix
  # would refuse it at build time ("cannot export references of path ... because
  # it is not in the input closure"): say so at evaluation time instead.
  contextless = v: builtins.isString v && !builtins.hasContext v;

  checkRootPaths =
    rootPaths:
    if rootPaths == null then
      fail ''
        the argument `rootPaths` is required: a list of derivations (or store paths)
        whose closures go into the cache, e.g. mkBinaryCache { rootPaths = [ hello ]; }''
    else if !builtins.isList rootPaths then
      fail "`rootPaths` must be a list of derivations or store paths (e.g. rootPaths = [ hello ]), got ${describe rootPaths}"
    else
      let
        n = builtins.length rootPaths;
        bad = builtins.filter (i: !validRoot (builtins.elemAt rootPaths i)) (builtins.genList (i: i) n);
        noContext = builtins.filter (i: contextless (builtins.elemAt rootPaths i)) (builtins.genList (i: i) n);
      in
      if bad != [ ] then
        let
          i = builtins.head bad;
        in
        fail "`rootPaths` must contain only derivations or store paths; element ${toString i} (counting from 0) is ${describe (builtins.elemAt rootPaths i)}"
      else if noContext != [ ] then
        let
          i = builtins.head noContext;
        in
        fail "`rootPaths` element ${toString i} (counting from 0) is ${describe (builtins.elemAt rootPaths i)}, a string without string context: Nix cannot export the references of a path that is not an input; pass the derivation itself (or \"\${drv}\"), not a plain or context-discarded string"
      else
        rootPaths;

  # { "<out path of a root>" = "<its .drv path>"; } for every root that is a
  # derivation. String context is discarded so that neither the .drv files nor
  # their build closures become inputs of the cache derivation.
  autoDerivers =
    rootPaths:
    builtins.listToAttrs (
      map (d: {
        name = builtins.unsafeDiscardStringContext (toString d.outPath);
        value = builtins.unsafeDiscardStringContext (toString d.drvPath);
      }) (builtins.filter (v: builtins.isAttrs v && v ? outPath && v ? drvPath) rootPaths)
    );

  checkDerivers =
    derivers:
    if !builtins.isAttrs derivers then
      fail "`derivers` must be null (computed from rootPaths) or an attribute set { \"<store path>\" = \"<drv path>\"; }, got ${describe derivers}"
    else
      builtins.mapAttrs (
        path: drv:
        if builtins.isString drv || builtins.isPath drv then
          builtins.unsafeDiscardStringContext (toString drv)
        else
          fail "`derivers.\"${path}\"` must be a .drv path string, got ${describe drv}"
      ) derivers;

  optionalAttr = name: value: if value == null then { } else { ${name} = value; };

  mkBinaryCache =
    {
      # Same as nixpkgs:
      name ? "binary-cache",
      compression ? "zstd", # nixpkgs: one of "none" "xz" "zstd"; here also "bzip2"
      rootPaths ? null, # required; `null` only to give a clear error when missing
      # Extensions:
      compressionLevel ? null, # int; null = the builder's default for `compression`
      narListing ? false, # write <hashpart>.ls NAR listings (like ?write-nar-listing=1)
      indexDebugInfo ? false, # write debuginfo/<build-id>.debug (like ?index-debug-info=1)
      priority ? null, # int: nix-cache-info "Priority:"
      wantMassQuery ? null, # bool: nix-cache-info "WantMassQuery:"
      derivers ? null, # null = computed from rootPaths; { } = no Deriver lines
      jobs ? null, # int >= 1; null = $NIX_BUILD_CORES
      # An xz(1) binary, e.g. "${pkgs.xz}/bin/xz": liblzma compresses xz NARs
      # much faster and smaller than the built-in pure Go encoder. null = built-in.
      xzProgram ? null,
    }:
    let
      roots = checkRootPaths rootPaths;

      attrs =
        {
          name = check (builtins.isString name && name != "") "`name` must be a non-empty string, got ${describe name}" name;
          inherit system;
          builder = "${builder}/bin/mkbinarycache";

          __structuredAttrs = true;
          exportReferencesGraph.closure = roots;

          # Building only copies what is already in the local store: never
          # worth a remote builder, nor a lookup in the substituters.
          preferLocalBuild = true;
          allowSubstitutes = false;

          compression =
            check (builtins.isString compression && builtins.elem compression compressions)
              "`compression` must be one of ${showList compressions}, got ${describe compression}"
              compression;

          narListing = check (builtins.isBool narListing) "`narListing` must be a bool, got ${describe narListing}" narListing;
          indexDebugInfo = check (builtins.isBool indexDebugInfo) "`indexDebugInfo` must be a bool, got ${describe indexDebugInfo}" indexDebugInfo;

          derivers = if derivers == null then autoDerivers roots else checkDerivers derivers;
        }
        // optionalAttr "compressionLevel" (
          if compressionLevel == null then
            null
          else if !builtins.isInt compressionLevel then
            fail "`compressionLevel` must be null or an integer, got ${describe compressionLevel}"
          else if compression == "none" then
            fail "`compressionLevel` makes no sense with compression = \"none\"; drop it or pick one of ${showList (builtins.filter (c: c != "none") compressions)}"
          else if builtins.isString compression && levels ? ${compression} && (compressionLevel < levels.${compression}.min || compressionLevel > levels.${compression}.max) then
            fail "`compressionLevel` for ${compression} must be from ${toString levels.${compression}.min} to ${toString levels.${compression}.max}, got ${toString compressionLevel}"
          else
            compressionLevel
        )
        // optionalAttr "priority" (
          check (priority == null || (builtins.isInt priority && priority >= 0))
            "`priority` must be null or a non-negative integer (nix-cache-info Priority; lower is preferred), got ${describe priority}"
            priority
        )
        // optionalAttr "wantMassQuery" (
          check (wantMassQuery == null || builtins.isBool wantMassQuery)
            "`wantMassQuery` must be null or a bool, got ${describe wantMassQuery}"
            wantMassQuery
        )
        // optionalAttr "xzProgram" (
          if xzProgram == null then
            null
          else if !(builtins.isString xzProgram || builtins.isPath xzProgram) then
            fail "`xzProgram` must be null or the path of an xz binary, e.g. \"\${pkgs.xz}/bin/xz\", got ${describe xzProgram}"
          else
            "${xzProgram}"
        )
        // optionalAttr "jobs" (
          check (jobs == null || (builtins.isInt jobs && jobs >= 1))
            "`jobs` must be null (use $NIX_BUILD_CORES) or a positive integer, got ${describe jobs}"
            jobs
        );
    in
    derivation attrs;
in
{
  inherit mkBinaryCache;
  # The accepted values of `compression`, for callers that build test matrices.
  inherit compressions;
}
