package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

// An env is where a tool runs: the newest Nix, chrooted into a Debian root
// file system (its own Nix must never open the host's store: it would
// migrate the database), or the host's Nix. Every env of one run sees the
// same store: the benchmark's persistent /nix, so each tool reads the same
// closures from the same disk.
type env struct {
	name string // "Nix 2.34.8", as `nix --version` says
	// lower is the root file system; "" for the host's own.
	lower string
	// upper and ovlWork hold what the benchmark installs on top of lower
	// (python3, zstd, strace), so that the shared root file system stays as
	// setup.sh left it.
	upper, ovlWork, merged string
	// nix is the persistent store directory mounted as /nix.
	nix string
	// binds are host directories made visible inside, as "src:dst".
	binds []string
	// vars are exported to every script run in the env: a Nix installed
	// beside the root's own (under /opt) needs PATH and its state and
	// configuration directories.
	vars []string
}

// chrootWrapper runs the script ($6) in a fresh private mount namespace
// (made by unshare) on the root file system $1 with an overlay ($2 upper,
// $3 its work dir, mounted at $4), the persistent store $5 as /nix, tmpfs
// on /root (Nix's ~/.cache must not outlive a run: it remembers narinfos)
// and /tmp, /proc, /dev, /sys, and each further "src:dst" argument bound.
// Everything goes away with the namespace.
const chrootWrapper = `set -e
lower=$1 upper=$2 work=$3 root=$4 nix=$5 script=$6
shift 6
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work" "$root"
mount --bind "$nix" "$root/nix"
mount -t tmpfs -o mode=0700 tmpfs "$root/root"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
for b do
	src=${b%%:*} dst=${b#*:}
	mkdir -p "$root$dst"
	mount --rbind "$src" "$root$dst"
done
exec chroot "$root" /usr/bin/env -i PATH=` + nixtest.ChrootPath + ` HOME=/root sh -c "$script"`

// hostWrapper runs the script ($2) with the host's binaries on the
// benchmark's store ($1 bound on /nix) in a private mount namespace.
const hostWrapper = `set -e
mount --bind "$1" /nix
exec sh -c "$2"`

// command returns the command that runs the shell script in e.
func (e *env) command(ctx context.Context, script string) *exec.Cmd {
	if len(e.vars) > 0 {
		script = "export " + nixtest.ShellQuote(e.vars...) + "; " + script
	}
	if e.lower == "" {
		return exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private",
			"sh", "-c", hostWrapper, "sh", e.nix, script)
	}
	args := []string{"--mount", "--propagation", "private", "sh", "-c", chrootWrapper, "sh",
		e.lower, e.upper, e.ovlWork, e.merged, e.nix, script}
	return exec.CommandContext(ctx, "unshare", append(args, e.binds...)...)
}

// output runs the script in e and returns its stdout; the error has the
// combined output.
func (e *env) output(ctx context.Context, script string) (string, error) {
	var stdout, combined strings.Builder
	cmd := e.command(ctx, script)
	cmd.Stdout = io.MultiWriter(&stdout, &combined)
	cmd.Stderr = &combined
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %s: %w\n%s", e.name, script, err, combined.String())
	}
	return stdout.String(), nil
}

// A timing is what the timeit subcommand measures of the command it runs
// and writes as JSON: wall time, CPU time (user and system, of the command
// and every descendant it waited for: on a busy machine the one figure
// that other jobs do not inflate) and wait4's Maxrss (the peak RSS, VmHWM,
// of the largest process of the tree that was waited for).
type timing struct {
	Wall   time.Duration `json:"wall"`
	CPU    time.Duration `json:"cpu"`
	MaxRSS int64         `json:"maxrss"` // bytes
}

// timed runs argv in e through `cachebench timeit`, so that the time of
// making the namespace and the chroot (most of a second) is not counted.
// vars are set in the command's environment.
func (e *env) timed(ctx context.Context, self, resultFile string, vars, argv []string) (timing, error) {
	if err := os.Remove(resultFile); err != nil && !os.IsNotExist(err) {
		return timing{}, err
	}
	script := "exec " + nixtest.ShellQuote(append(append(append([]string{"env"}, vars...), self, "timeit", resultFile, "--"), argv...)...)
	var combined strings.Builder
	cmd := e.command(ctx, script)
	cmd.Stdout, cmd.Stderr = &combined, &combined
	if err := cmd.Run(); err != nil {
		return timing{}, fmt.Errorf("%s: %s: %w\n%s", e.name, strings.Join(argv, " "), err, tail(combined.String(), 4000))
	}
	data, err := os.ReadFile(resultFile)
	if err != nil {
		return timing{}, fmt.Errorf("%s: %s: no timing: %w\n%s", e.name, strings.Join(argv, " "), err, tail(combined.String(), 4000))
	}
	var t timing
	if err := json.Unmarshal(data, &t); err != nil {
		return timing{}, fmt.Errorf("%s: %w", resultFile, err)
	}
	return t, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// timeit is the subcommand that runs argv, then writes its timing to
// resultFile. It exits with the command's status.
func timeit(resultFile string, argv []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("timeit: no command")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	start := time.Now()
	err := cmd.Run()
	t := timing{Wall: time.Since(start)}
	if err != nil {
		return fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		t.MaxRSS = ru.Maxrss << 10 // KiB on Linux
		t.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	data, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return os.WriteFile(resultFile, data, 0o644)
}

// rootTools are what the benchmark needs inside the root file system
// besides Nix, each with a shell test for it: the nixpkgs method's
// interpreter and compressors, zstd for the floor, strace for the profiles.
var rootTools = []struct{ test, pkg string }{
	{"python3 -c 'import multiprocessing' 2>/dev/null", "python3"},
	{"command -v zstd", "zstd"},
	{"command -v xz", "xz-utils"},
	{"command -v strace", "strace"},
}

// prepare makes the overlay and store directories and installs rootTools
// into the overlay with the root's own apt (Debian's packages). The
// mirror's sid Release file may be past its Valid-Until date.
func (e *env) prepare(ctx context.Context, logf func(string, ...any)) error {
	if e.lower == "" {
		return os.MkdirAll(filepath.Join(e.nix, "store"), 0o755)
	}
	for _, d := range []string{e.upper, e.ovlWork, e.merged, filepath.Join(e.nix, "store"), filepath.Join(e.nix, "var", "nix")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// Nix 2.34 refuses a world-writable /nix.
	if err := os.Chmod(e.nix, 0o755); err != nil {
		return err
	}
	var probe strings.Builder
	for _, t := range rootTools {
		fmt.Fprintf(&probe, "%s >/dev/null || echo %s; ", t.test, t.pkg)
	}
	out, err := e.output(ctx, probe.String())
	if err != nil {
		return err
	}
	if missing := strings.Fields(out); len(missing) > 0 {
		logf("installing %s into the overlay of %s", strings.Join(missing, " "), e.lower)
		opt := "-o Acquire::Check-Valid-Until=false"
		script := fmt.Sprintf("apt-get -q %s update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get -q %s install -y --no-install-recommends %s",
			opt, opt, strings.Join(missing, " "))
		if _, err := e.output(ctx, script); err != nil {
			return fmt.Errorf("install %s: %w", strings.Join(missing, " "), err)
		}
	}
	out, err = e.output(ctx, "nix --version")
	if err != nil {
		return err
	}
	e.name = strings.TrimPrefix(strings.TrimSpace(out), "nix (Nix) ")
	return nil
}

// hostVersion is the host's Nix version.
func hostVersion() (string, error) {
	out, err := exec.Command("nix", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("nix --version: %w", err)
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "nix (Nix) "), nil
}
