package nixquery

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// wellKnownNixDirs hold the Nix tools on NixOS, in the default profile of
// a multi-user install, and in distribution packages.
var wellKnownNixDirs = []string{"/run/current-system/sw/bin", "/nix/var/nix/profiles/default/bin", "/usr/bin", "/usr/local/bin", "/bin"}

// Tool finds the Nix program name without relying on PATH, which is
// minimal when nix-daemon runs a post-build-hook: NIX_BIN_DIR, the
// directory of the running Nix (the nearest ancestor process that is Nix
// and whose directory has name: the same version as the one building),
// PATH, then the usual places. It returns name when none has it.
func (n Nix) Tool(name string) string {
	var dirs []string
	if d := n.getenv("NIX_BIN_DIR"); d != "" {
		dirs = append(dirs, d)
	}
	dirs = append(dirs, nixAncestorDirs()...)
	dirs = append(dirs, filepath.SplitList(n.getenv("PATH"))...)
	dirs = append(dirs, wellKnownNixDirs...)
	if p := findExecutable(dirs, name); p != "" {
		return p
	}
	return name
}

// LookPath finds the executable name in the directories of PATH as getenv
// reads it; "" when none has it.
func LookPath(getenv func(string) string, name string) string {
	return findExecutable(filepath.SplitList(getenv("PATH")), name)
}

// findExecutable returns the first executable name in dirs, or "". A
// relative directory (PATH's "" is the working directory) never counts: it
// would pick up a program by chance.
func findExecutable(dirs []string, name string) string {
	for _, d := range dirs {
		if p := filepath.Join(d, name); filepath.IsAbs(d) && isExecutable(p) {
			return p
		}
	}
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// nixAncestorDirs returns the directories of the executables of this
// process's ancestors that are Nix (nix, nix-daemon, nix-build, …),
// nearest first. Others are skipped: the directory of a user's shell may
// hold another Nix than the one on PATH.
func nixAncestorDirs() []string {
	var dirs []string
	pid := os.Getppid()
	for range 8 {
		if pid <= 1 {
			break
		}
		if exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); err == nil && strings.HasPrefix(filepath.Base(exe), "nix") {
			dirs = append(dirs, filepath.Dir(exe))
		}
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			break
		}
		// "pid (comm) state ppid …": comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			break
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 {
			break
		}
		if pid, err = strconv.Atoi(fields[1]); err != nil {
			break
		}
	}
	return dirs
}
