#!/usr/bin/env bash
# Runs every test, with real Nix: installs Nix and the test tools first where
# they are missing (Debian, as root). Tests that need Nix fail instead of
# skipping (MKBINARYCACHE_REQUIRE_NIX=1).
#   bash scripts/test.sh [go test flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
unset NIX_REMOTE
bash scripts/setup.sh
# Per test binary. The slowest, vmtests (two hosts for each Nix version of
# the matrix), takes about 3 minutes on 2 busy cores; a hang must still end
# well within CI's 30 minutes. A -timeout among the arguments wins.
MKBINARYCACHE_REQUIRE_NIX=1 go test -timeout 15m "$@" ./...
