# The part of nixpkgs' lib that nix/testdata/nixpkgs-stub.nix and the files
# under test use, behaving as nixpkgs' own does (each names its file).
rec {
  # lib/fixed-points.nix
  fix =
    f:
    let
      x = f x;
    in
    x;
  extends =
    overlay: f: final:
    let
      prev = f final;
    in
    prev // overlay final prev;

  # lib/trivial.nix
  functionArgs =
    f: if f ? __functor then f.__functionArgs or (functionArgs (f.__functor f)) else builtins.functionArgs f;
  setFunctionArgs = f: args: {
    __functor = self: f;
    __functionArgs = args;
  };

  # lib/customisation.nix
  makeOverridable =
    f:
    let
      overridable =
        origArgs:
        let
          result = f origArgs;
          overrideArgs =
            newArgs:
            makeOverridable f (origArgs // (if builtins.isFunction newArgs then newArgs origArgs else newArgs));
        in
        if builtins.isAttrs result && !(result ? __functor) then
          result // { override = overrideArgs; }
        else if builtins.isFunction result || result ? __functor then
          setFunctionArgs result (functionArgs result) // { override = overrideArgs; }
        else
          result;
    in
    setFunctionArgs overridable (functionArgs f);
  # callPackageWith: the arguments the function names, taken from the
  # package set (a throwing alias is passed as it is, and throws when used).
  callPackageWith =
    autoArgs: fn: args:
    let
      f = if builtins.isFunction fn || fn ? __functor then fn else import fn;
    in
    makeOverridable f (builtins.intersectAttrs (functionArgs f) autoArgs // args);
  # extendDerivation: outPath and drvPath assert the condition (check-meta's
  # validity.handled).
  extendDerivation =
    condition: passthru: drv:
    drv
    // passthru
    // {
      outPath = assert condition; drv.outPath;
      drvPath = assert condition; drv.drvPath;
    };

  # lib/strings.nix, lib/versions.nix, lib/lists.nix, lib/attrsets.nix
  versionAtLeast = a: b: builtins.compareVersions a b >= 0;
  versionOlder = a: b: builtins.compareVersions a b < 0;
  versions.majorMinor =
    v:
    let
      p = builtins.splitVersion v;
    in
    "${builtins.elemAt p 0}.${builtins.elemAt p 1}";
  optional = c: x: if c then [ x ] else [ ];
  optionals = c: l: if c then l else [ ];
  foldl' = builtins.foldl';
  hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
  escapeShellArg = s: "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] (toString s)}'";
  fileContents =
    p:
    let
      s = builtins.readFile p;
    in
    builtins.head (builtins.match "(.*[^\n])\n*" s);
  getExe = p: "${p}/bin/${p.meta.mainProgram or p.pname or p.name}";
  genAttrs =
    names: f:
    builtins.listToAttrs (
      map (n: {
        name = n;
        value = f n;
      }) names
    );
  nameValuePair = name: value: { inherit name value; };
  mapAttrs' = f: set: builtins.listToAttrs (map (n: f n set.${n}) (builtins.attrNames set));

  # lib/fileset: enough for a source tree
  fileset = {
    toSource = { root, fileset }: root;
    unions = l: l;
    fileFilter = pred: dir: dir;
    maybeMissing = p: p;
  };

  # lib/modules.nix: the wrappers of a definition's value.
  mkOverride = priority: content: {
    _type = "override";
    inherit priority content;
  };
  mkForce = mkOverride 50;
  mkDefault = mkOverride 1000;
  mkIf = condition: content: {
    _type = "if";
    inherit condition content;
  };

  licenses.mit = {
    spdxId = "MIT";
    free = true;
  };
  # lib/systems/doubles.nix (the subset these files meet)
  platforms = {
    linux = [
      "x86_64-linux"
      "aarch64-linux"
    ];
    darwin = [
      "x86_64-darwin"
      "aarch64-darwin"
    ];
    unix = platforms.linux ++ platforms.darwin;
  };
}
