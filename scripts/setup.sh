#!/usr/bin/env bash
# Installs what mkbinarycache's tests and example need on a Debian machine,
# as root: Nix 2.8 (nix-bin), a static busybox for test closures, zstd, xz,
# python3, iproute2; and a nix.conf for a machine without a network.
# Does nothing that is already done, so every entry point can call it.
set -euo pipefail
step() { echo "==> $*"; }
if [ "$(id -u)" != 0 ]; then
	echo "error: $0 must run as root (single-user Nix, mount namespaces)" >&2
	exit 1
fi

# --- system packages -------------------------------------------------------
missing=()
command -v nix-build >/dev/null || missing+=(nix-bin)
# A dynamically linked busybox would not run inside the Nix sandbox.
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
command -v zstd >/dev/null || missing+=(zstd)
command -v xz >/dev/null || missing+=(xz-utils)
command -v python3 >/dev/null || missing+=(python3)
command -v ip >/dev/null || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
	step "installing system packages (missing: ${missing[*]})"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	# confold: keep a nix.conf already written below instead of prompting.
	apt-get install -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		nix-bin busybox-static zstd xz-utils python3 iproute2
fi

# --- Nix -------------------------------------------------------------------
# Debian's nix.conf (from nix-setup-systemd) has `sandbox = false` and the
# default substituter, which retries for minutes without a network. Builds
# run as root in single-user mode, so no build users either (DESIGN.md §3).
if ! grep -Eq '^[[:space:]]*substituters[[:space:]]*=[[:space:]]*$' /etc/nix/nix.conf 2>/dev/null; then
	step "writing /etc/nix/nix.conf"
	mkdir -p /etc/nix
	cat >/etc/nix/nix.conf <<'EOF'
build-users-group =
substituters =
experimental-features = nix-command flakes
EOF
fi
# Single-user mode: Nix creates its database on first use, but needs these.
mkdir -p /nix/store /nix/var/nix
