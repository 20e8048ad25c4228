package main_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit/proc"
)

// fileOp is one file system call a command made, as strace saw it.
type fileOp struct {
	call  string // rename (or link: a name appears), unlink or sync
	paths []string
}

var (
	traceLineRE = regexp.MustCompile(`^(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+)`)
	// A path argument: quoted, after its directory descriptor (shown by
	// strace -y as fd<path>) for the *at calls.
	pathArgRE = regexp.MustCompile(`(?:(?:AT_FDCWD|\d+<((?:[^>\\]|\\.)*)>), )?"((?:[^"\\]|\\.)*)"`)
)

// traced runs the binary under strace and returns its successful renames
// and links, unlinks and syncs, in order; strace -f follows the Nix commands it runs.
func traced(t *testing.T, env []string, args ...string) []fileOp {
	t.Helper()
	if _, err := exec.LookPath("strace"); err != nil {
		t.Fatalf("strace is needed (apt-get install strace): %v", err)
	}
	log := filepath.Join(t.TempDir(), "strace")
	cmd := exec.Command("strace", append([]string{"-f", "-qq", "-y", "-s", "4096", "-o", log,
		"-e", "trace=rename,renameat,renameat2,link,linkat,unlink,unlinkat,syncfs,fsync,fdatasync,sync", binary(t)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := proc.Run(cmd, proc.Timeout); err != nil {
		t.Fatalf("mkbinarycache %s under strace: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	var ops []fileOp
	unfinished := map[string]string{} // pid -> the call's start
	for _, line := range strings.Split(string(data), "\n") {
		pid, rest, _ := strings.Cut(line, " ")
		if head, ok := strings.CutSuffix(line, " <unfinished ...>"); ok {
			unfinished[pid] = head
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(rest), "<... ") {
			_, tail, _ := strings.Cut(rest, " resumed>")
			line = unfinished[pid] + tail
			delete(unfinished, pid)
		}
		m := traceLineRE.FindStringSubmatch(line)
		if m == nil || m[4] != "0" {
			continue
		}
		var paths []string
		for _, q := range pathArgRE.FindAllStringSubmatch(m[3], -1) {
			s, err := strconv.Unquote(`"` + q[2] + `"`)
			if err != nil {
				s = q[2]
			}
			if q[1] != "" && !filepath.IsAbs(s) {
				s = filepath.Join(q[1], s)
			}
			paths = append(paths, s)
		}
		switch m[2] {
		case "rename", "renameat", "renameat2", "link", "linkat":
			ops = append(ops, fileOp{"rename", paths})
		case "unlink", "unlinkat":
			ops = append(ops, fileOp{"unlink", paths})
		case "syncfs", "fsync", "fdatasync", "sync":
			ops = append(ops, fileOp{"sync", nil})
		}
	}
	return ops
}

// target is the file an op made or removed.
func (o fileOp) target() string {
	if len(o.paths) == 0 {
		return ""
	}
	return o.paths[len(o.paths)-1]
}

// syncBetween reports whether a sync comes after index a and before b.
func syncBetween(ops []fileOp, a, b int) bool {
	for i := a + 1; i < b; i++ {
		if ops[i].call == "sync" {
			return true
		}
	}
	return false
}

// checkPublished checks the order that makes a cache safe across power
// cuts: each narinfo renamed into dir only after a sync that follows the
// rename of its NAR and of every reference's narinfo written by the same
// run, and a sync after the last narinfo.
func checkPublished(t testing.TB, ops []fileOp, dir string) {
	t.Helper()
	renamed := map[string]int{} // final name -> last index
	var narinfos []string
	for i, o := range ops {
		if o.call == "rename" && strings.HasPrefix(o.target(), dir+"/") {
			renamed[o.target()] = i
			if strings.HasSuffix(o.target(), ".narinfo") {
				narinfos = append(narinfos, o.target())
			}
		}
	}
	if len(narinfos) == 0 {
		t.Fatalf("no narinfo was renamed into %s", dir)
	}
	last := 0
	for _, f := range narinfos {
		i := renamed[f]
		last = max(last, i)
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ni, _, err := narinfo.Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if j, ok := renamed[filepath.Join(dir, ni.URL)]; ok && !syncBetween(ops, j, i) {
			t.Errorf("%s renamed with no sync since its NAR's rename", f)
		} else if j > i {
			t.Errorf("%s renamed before its NAR", f)
		}
		for _, r := range ni.References {
			rf := filepath.Join(dir, cachedir.NarInfoName(r))
			if k, ok := renamed[rf]; ok && rf != f && !syncBetween(ops, k, i) {
				t.Errorf("%s renamed with no sync since its reference %s's narinfo", f, r)
			}
		}
	}
	if !syncBetween(ops, last, len(ops)) {
		t.Errorf("no sync after the last narinfo")
	}
	t.Logf("%d narinfos published in order, %d syncs", len(narinfos), count(ops, "sync"))
}

func count(ops []fileOp, call string) int {
	n := 0
	for _, o := range ops {
		if o.call == call {
			n++
		}
	}
	return n
}

// TestPowerLoss checks the order of renames, unlinks and syncs of every
// command that writes a cache, on caches of real Nix paths.
func TestPowerLoss(t *testing.T) {
	nixtest.Require(t)
	p := ciPaths(t)
	keys := t.TempDir()
	sec := filepath.Join(keys, "k.sec")
	mkbinarycache(t, "keygen", "powerloss-1", "--secret-key-file", sec, "--public-key-file", filepath.Join(keys, "k.pub"))

	out := filepath.Join(t.TempDir(), "out")
	t.Run("out", func(t *testing.T) {
		ops := traced(t, nil, "--out", out, "--build-closure", "--nar-listing", "--index-debug-info", "--quiet", p["app"], p["junk"])
		checkPublished(t, ops, out)
	})
	t.Run("hook", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "hook")
		ops := traced(t, []string{"OUT_PATHS=", "DRV_PATH=" + p["app.drv"]}, "hook", "--build-closure", "--key-file", sec, "--strict", "--out", dir)
		checkPublished(t, ops, dir)
		// Signed before publishing: each narinfo is renamed once, signed.
		seen := map[string]int{}
		for _, o := range ops {
			if o.call == "rename" && strings.HasSuffix(o.target(), ".narinfo") {
				seen[o.target()]++
			}
		}
		for f, n := range seen {
			data, _ := os.ReadFile(f)
			if n != 1 || !strings.Contains(string(data), "\nSig: powerloss-1:") {
				t.Errorf("%s: renamed %d times, signed: %v", f, n, strings.Contains(string(data), "Sig: "))
			}
		}
	})
	t.Run("copy", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "copy")
		ops := traced(t, nil, "copy", "--quiet", "--from", out, "--to", dir)
		checkPublished(t, ops, dir)
	})
	t.Run("sign", func(t *testing.T) {
		dir := cpCache(t, out)
		ops := traced(t, nil, "sign", "--quiet", "--key-file", sec, dir)
		last := -1
		for i, o := range ops {
			if o.call == "rename" && strings.HasSuffix(o.target(), ".narinfo") {
				last = i
			}
		}
		if last < 0 || !syncBetween(ops, last, len(ops)) {
			t.Errorf("sign: no sync after the last narinfo rename (%d)", last)
		}
	})
	t.Run("gc", func(t *testing.T) {
		dir := cpCache(t, out)
		before := testkit.NarInfos(t, dir)
		ops := traced(t, nil, "gc", "--quiet", "--keep", p["app"], dir)
		unlinked := map[string]int{}
		lastMeta, firstNAR := -1, len(ops)
		for i, o := range ops {
			if o.call != "unlink" || !strings.HasPrefix(o.target(), dir+"/") {
				continue
			}
			unlinked[o.target()] = i
			if strings.HasPrefix(o.target(), dir+"/nar/") {
				firstNAR = min(firstNAR, i)
			} else if !strings.HasSuffix(o.target(), ".ls") {
				lastMeta = max(lastMeta, i)
			}
		}
		if lastMeta < 0 || firstNAR == len(ops) {
			t.Fatalf("gc removed no narinfo or no NAR: %v", ops)
		}
		if !syncBetween(ops, lastMeta, firstNAR) {
			t.Errorf("no sync between the last narinfo or debuginfo unlink (%d) and the first NAR unlink (%d)", lastMeta, firstNAR)
		}
		for p, ni := range before {
			f := filepath.Join(dir, cachedir.NarInfoName(p))
			i, ok := unlinked[f]
			if !ok {
				continue
			}
			for _, r := range ni.References {
				rf := filepath.Join(dir, cachedir.NarInfoName(r))
				if k, ok := unlinked[rf]; ok && rf != f && k < i {
					t.Errorf("%s removed before its referrer %s", r, ni.StorePath)
				}
			}
		}
		t.Logf("%d files removed, %d syncs", len(unlinked), count(ops, "sync"))
	})
}

// The check finds a narinfo published with no sync since its NAR.
func TestPowerLossCheck(t *testing.T) {
	dir := t.TempDir()
	ni := "StorePath: /nix/store/70gvzv4w0ffkb6chy0ayi86xcnc4i950-hello\nURL: nar/x.nar\nCompression: none\nNarHash: sha256:0v7zanlz9q2p5mcrw4cq9mgx5khq3zx2gf5c6axchkys6726w98r\nNarSize: 624\nReferences: \n"
	name := filepath.Join(dir, "70gvzv4w0ffkb6chy0ayi86xcnc4i950.narinfo")
	if err := os.WriteFile(name, []byte(ni), 0o644); err != nil {
		t.Fatal(err)
	}
	nar := fileOp{"rename", []string{dir + "/nar/.tmp-1", dir + "/nar/x.nar"}}
	info := fileOp{"rename", []string{dir + "/.tmp-2", name}}
	sync := fileOp{"sync", nil}
	for _, tc := range []struct {
		ops    []fileOp
		errors int
	}{
		{[]fileOp{nar, sync, info, sync}, 0},
		{[]fileOp{nar, info, sync}, 1},
		{[]fileOp{nar, sync, info}, 1},
	} {
		r := &testkit.Recorder{TB: t}
		checkPublished(r, tc.ops, dir)
		if len(r.Errors) != tc.errors {
			t.Errorf("%v: %d errors %q, want %d", tc.ops, len(r.Errors), r.Errors, tc.errors)
		}
	}
}
