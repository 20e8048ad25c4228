# Test closure for mkbinarycache, built without nixpkgs: every derivation is
# a busybox shell script. `busybox` is a directory holding bin/busybox (a
# static binary), e.g. what nixtest.BusyboxDir returns.
#
#   nix-build testdata/fixture.nix --arg busybox /path/to/bbdir -A hello
#
# hello's closure is { hello, libgreet, busybox }; hello references both,
# libgreet references busybox (its script's interpreter).
{ busybox }:
let
  bb = builtins.path { path = busybox; name = "busybox"; };
  sh = "${bb}/bin/busybox";

  mk = name: script: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = sh;
    # -e: a failing step must fail the build, not yield a partial output.
    args = [ "sh" "-e" "-c" script ];
    PATH = "${bb}/bin";
  };

  # Exercises every kind of NAR entry and the usual edge cases of a NAR
  # writer: nesting, empty file, empty dir, executable, symlinks (one
  # dangling), names whose byte order differs from case-insensitive order,
  # a file without a trailing newline, and one multi-MiB file mixing
  # text, zeros and binary data (so compressors see each kind).
  libgreet = mk "libgreet" ''
    mkdir -p $out/share/greet/deep/deeper/deepest $out/share/empty-dir $out/bin
    echo "Hello from libgreet!" > $out/share/greet/greeting
    : > $out/share/greet/empty-file
    printf 'no newline at end' > $out/share/greet/no-newline
    echo upper > $out/share/greet/B
    echo lower-a > $out/share/greet/a
    echo lower-b > $out/share/greet/b
    echo spaced > "$out/share/greet/with space"
    echo nested > $out/share/greet/deep/deeper/deepest/file
    ln -s greeting $out/share/greet/link-to-greeting
    ln -s ../share/greet/greeting $out/bin/link-up
    ln -s does-not-exist $out/share/greet/dangling
    printf '#!${sh} sh\n${sh} cat %s/share/greet/greeting\n' $out > $out/bin/greet
    chmod 0755 $out/bin/greet
    {
      seq 1 150000
      head -c 1048576 /dev/zero
      head -c 1048576 ${sh}
      seq 150000 -1 1
    } | head -c 3145728 > $out/share/greet/big.bin
  '';

  hello = mk "hello" ''
    mkdir -p $out/bin
    printf '#!${sh} sh\nexec ${libgreet}/bin/greet "$@"\n' > $out/bin/hello
    chmod 0755 $out/bin/hello
  '';

  # The legacy (non-structured) exportReferencesGraph file for hello:
  # "path\nderiver\nnrefs\nref..." per path, no hashes.
  legacyGraph = derivation {
    name = "hello-legacy-graph";
    system = builtins.currentSystem;
    builder = sh;
    args = [ "sh" "-e" "-c" "cp closure $out" ];
    PATH = "${bb}/bin";
    exportReferencesGraph = [ "closure" hello ];
  };
in
{
  inherit libgreet hello legacyGraph;
  # The store path of the imported busybox (a string, not a derivation).
  busybox = bb;
  roots = [ hello ];
}
