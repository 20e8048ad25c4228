#!/usr/bin/env bash
# Installs what mkbinarycache's tests and example need on a Debian machine,
# as root: Nix 2.8 (nix-bin), a static busybox for test closures, zstd, xz,
# python3, iproute2, strace; and a nix.conf for a machine without a network. Then two
# Debian root file systems with newer Nix (trixie: 2.26, sid: 2.34) for the
# tests' Nix version matrix (internal/nixtest).
# Does nothing that is already done, so every entry point can call it.
#   bash scripts/setup.sh            # all of it
#   MKBINARYCACHE_ROOTFS_SUITES= bash scripts/setup.sh   # without the rootfs
#   bash scripts/setup.sh --minimal  # only what the example needs: Nix 2.8 and busybox
set -euo pipefail
step() { echo "==> $*"; }
minimal=false
[ "${1:-}" = --minimal ] && minimal=true
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
# The tests record the order of file operations (power-loss safety) with it.
command -v strace >/dev/null || missing+=(strace)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
	step "installing system packages (missing: ${missing[*]})"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	# confold: keep a nix.conf already written below instead of prompting.
	apt-get install -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		nix-bin busybox-static zstd xz-utils python3 iproute2 strace debootstrap
fi

# --- Nix -------------------------------------------------------------------
# Debian's nix.conf (from nix-setup-systemd) has `sandbox = false` and the
# default substituter, which retries for minutes without a network. Builds
# run as root in single-user mode, so no build users either.
nix_conf='build-users-group =
substituters =
experimental-features = nix-command flakes'
if ! grep -Eq '^[[:space:]]*substituters[[:space:]]*=[[:space:]]*$' /etc/nix/nix.conf 2>/dev/null; then
	step "writing /etc/nix/nix.conf"
	mkdir -p /etc/nix
	printf '%s\n' "$nix_conf" >/etc/nix/nix.conf
fi
# Single-user mode: Nix creates its database on first use, but needs these.
mkdir -p /nix/store /nix/var/nix

# --- S3 server for the push tests ------------------------------------------
# versitygw (Apache-2.0), a real S3 server that the tests of
# `mkbinarycache push` start on a free port. A binary in /usr/local/bin, not
# a go.mod dependency: the module Nix vendors must not carry test servers.
VERSITYGW_VERSION=v1.8.0
# It builds (CPU) while the root file systems below download (network).
versitygw_pid=
if ! $minimal && ! command -v versitygw >/dev/null; then
	step "installing versitygw $VERSITYGW_VERSION (go install, a few minutes, in the background)"
	go=$(command -v go || echo /usr/local/go/bin/go)
	GOBIN=/usr/local/bin "$go" install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" &
	versitygw_pid=$!
fi


# --- newer Nix: Debian root file systems -----------------------------------
# Each is built in <suite>.tmp and renamed to <suite> once complete, with a
# marker file holding its `nix --version`: a present rootfs is never
# downloaded again, and an interrupted run is finished (or, if its
# debootstrap did not complete, redone) by the next one. The tests run this
# Nix chrooted, each time on a fresh tmpfs /nix: never on the host's store.
ROOTFS=${MKBINARYCACHE_ROOTFS:-/var/lib/mkbinarycache/rootfs}
SUITES=${MKBINARYCACHE_ROOTFS_SUITES-trixie sid}
$minimal && SUITES=
MARKER=.mkbinarycache-rootfs

# mirror prints the Debian mirror this machine's apt uses.
mirror() {
	local m=""
	if [ -f /etc/apt/sources.list.d/debian.sources ]; then
		m=$(awk '$1 == "URIs:" { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
	fi
	if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
		# deb [options] URL suite components
		m=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' /etc/apt/sources.list | head -n 1)
	fi
	echo "${m:-http://deb.debian.org/debian}"
}

# in_chroot runs a shell command in dir with /proc mounted, in a private
# mount namespace so that nothing stays mounted afterwards.
in_chroot() {
	local dir=$1
	shift
	unshare --mount --propagation private sh -c 'mount -t proc proc "$1/proc" && exec chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C sh -c "$2"' sh "$dir" "$*"
}

# busy tells whether another process works on a rootfs being built: a
# debootstrap into it, or anything chrooted into it.
busy() {
	local suite=$1 dir=$2 p
	pgrep -f "debootstrap .*$suite\.tmp( |\$)" >/dev/null && return 0
	for p in /proc/[0-9]*; do
		case "$(readlink "$p/root" 2>/dev/null)" in
		"$dir" | "$dir"/*) return 0 ;;
		esac
	done
	return 1
}

build_rootfs() {
	local suite=$1 final="$ROOTFS/$1" tmp="$ROOTFS/$1.tmp"
	# Someone else's debootstrap or apt-get in the same directory (a previous
	# run in the background): let it finish rather than race it.
	local waited=0
	while busy "$suite" "$tmp"; do
		[ $waited = 0 ] && step "waiting for the processes working in $tmp"
		waited=$((waited + 1))
		if [ $waited -gt 900 ]; then
			echo "error: processes still working in $tmp after 15 minutes" >&2
			exit 1
		fi
		sleep 1
	done
	# A rootfs without its marker is unfinished: finish it under the .tmp name.
	if [ -d "$final" ] && [ ! -d "$tmp" ]; then
		mv "$final" "$tmp"
	fi
	# debootstrap removes its own /debootstrap dir when it completes.
	if [ -d "$tmp" ] && { [ -d "$tmp/debootstrap" ] || [ ! -x "$tmp/usr/bin/apt-get" ]; }; then
		step "$tmp: incomplete debootstrap, starting over"
		rm -rf "$tmp"
	fi
	if [ ! -d "$tmp" ]; then
		local m
		m=$(mirror)
		step "debootstrap $suite from $m into $tmp"
		mkdir -p "$ROOTFS"
		debootstrap --variant=minbase "$suite" "$tmp" "$m" >"$ROOTFS/$suite.debootstrap.log" 2>&1 || {
			tail -n 20 "$ROOTFS/$suite.debootstrap.log" >&2
			echo "error: debootstrap $suite failed; log: $ROOTFS/$suite.debootstrap.log" >&2
			exit 1
		}
	fi
	if ! in_chroot "$tmp" 'dpkg-query -W -f "\${Status}" nix-bin 2>/dev/null | grep -qx "install ok installed"'; then
		step "installing nix-bin in $tmp"
		# The mirror's sid Release file may be past its Valid-Until date.
		# dpkg --configure -a: finish what an interrupted run unpacked.
		in_chroot "$tmp" 'dpkg --configure -a &&
			apt-get -q -o Acquire::Check-Valid-Until=false update &&
			apt-get -q -o Acquire::Check-Valid-Until=false install -y --no-install-recommends nix-bin &&
			apt-get clean' >"$ROOTFS/$suite.apt.log" 2>&1 || {
			tail -n 20 "$ROOTFS/$suite.apt.log" >&2
			echo "error: installing nix-bin in $tmp failed; log: $ROOTFS/$suite.apt.log" >&2
			exit 1
		}
	fi
	mkdir -p "$tmp/etc/nix" "$tmp/nix"
	printf '%s\n' "$nix_conf" >"$tmp/etc/nix/nix.conf"
	local version
	version=$(in_chroot "$tmp" 'nix --version')
	echo "$version" >"$tmp/$MARKER"
	mv "$tmp" "$final"
	step "$final: $version"
}

if [ -n "$SUITES" ]; then
	mkdir -p "$ROOTFS"
	pids=()
	for suite in $SUITES; do
		if [ -f "$ROOTFS/$suite/$MARKER" ]; then
			# Cheap, and keeps an older rootfs in step with this script.
			if [ "$(cat "$ROOTFS/$suite/etc/nix/nix.conf" 2>/dev/null)" != "$nix_conf" ]; then
				printf '%s\n' "$nix_conf" >"$ROOTFS/$suite/etc/nix/nix.conf"
			fi
			continue
		fi
		# The suites build at once (mostly downloads); one setup at a time
		# per suite (CI and a developer, or two test runs).
		(
			exec 9>"$ROOTFS/.$suite.lock"
			flock 9
			[ -f "$ROOTFS/$suite/$MARKER" ] || build_rootfs "$suite"
		) &
		pids+=($!)
	done
	failed=0
	for pid in "${pids[@]}"; do
		wait "$pid" || failed=1
	done
	if [ $failed != 0 ]; then
		echo "error: could not prepare the Nix root file systems in $ROOTFS" >&2
		exit 1
	fi
fi

if [ -n "$versitygw_pid" ] && ! wait "$versitygw_pid"; then
	echo "error: could not install versitygw $VERSITYGW_VERSION" >&2
	exit 1
fi
