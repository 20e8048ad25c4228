#!/usr/bin/env bash
# Builds a binary cache of an example closure (hello, its library and
# busybox: testdata/fixture.nix, no nixpkgs needed) with mkBinaryCache, under
# the Nix sandbox, and copies it to DIR (default /tmp/hello-cache). Installs
# Nix first where it is missing (Debian, as root).
#   bash scripts/example.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
unset NIX_REMOTE
dest=${1:-/tmp/hello-cache}
bash scripts/setup.sh --minimal

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The builder: one static binary, imported into the store with builtins.path.
CGO_ENABLED=0 go build -trimpath -o "$work/builder/bin/mkbinarycache" ./builder/cmd/mkbinarycache
mkdir -p "$work/busybox/bin"
cp "$(readlink -f /bin/busybox)" "$work/busybox/bin/busybox"

expr="let
  fx = import $PWD/testdata/fixture.nix { busybox = $work/busybox; };
  lib = import $PWD/nix { builder = builtins.path { path = $work/builder; name = \"mkbinarycache\"; }; };
in lib.mkBinaryCache { rootPaths = [ fx.hello ]; }"
cache=$(nix-build --no-out-link --option sandbox true -E "$expr")
hello=$(nix-build --no-out-link --option sandbox true -E "(import $PWD/testdata/fixture.nix { busybox = $work/busybox; }).hello")

rm -rf "$dest"
cp -r --no-preserve=mode "$cache" "$dest"
echo "binary cache of $hello's closure in $dest (built as $cache):"
ls "$dest"
echo
echo "Substitute from it on another machine (or a fresh store):"
echo "  nix-store -r $hello --option substituters file://$dest --option require-sigs false"
