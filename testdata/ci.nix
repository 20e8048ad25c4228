# The project of the CI loop tests: fixture.nix's hello, plus a
# tool needed only to build app (app's output does not refer to it), a leaf
# whose text a later CI run changes, and junk that gc removes.
#
#   nix-build testdata/ci.nix --argstr busybox DIR -A app
{ busybox, motd ? "first run" }:
let
  fixture = import ./fixture.nix { inherit busybox; };
  bb = builtins.path { path = busybox; name = "busybox"; };
  sh = "${bb}/bin/busybox";

  mk = name: script: extra: derivation ({
    inherit name;
    system = builtins.currentSystem;
    builder = sh;
    args = [ "sh" "-e" "-c" script ];
    PATH = "${bb}/bin";
  } // extra);

  tool = mk "tool" ''
    mkdir -p $out/bin
    printf '#!${sh} sh\necho "made by tool for $1"\n' > $out/bin/gen
    chmod 0755 $out/bin/gen
  '' { };

  motdPkg = mk "motd" ''
    mkdir -p $out/share
    echo "$MOTD" > $out/share/motd
  '' { MOTD = motd; };

  app = mk "app" ''
    echo "app: generating with tool"
    mkdir -p $out/bin $out/share
    ${tool}/bin/gen app > $out/share/made-by
    printf '#!${sh} sh\n${sh} cat ${motdPkg}/share/motd\nexec ${fixture.hello}/bin/hello\n' > $out/bin/app
    chmod 0755 $out/bin/app
  '' { };

  junk = mk "junk" ''
    echo "nothing needs this" > $out
  '' { };
in
{
  inherit tool app junk;
  motd = motdPkg;
  inherit (fixture) hello libgreet;
}
