package main_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	bin "encoding/binary"
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit/s3server"
)

// The hostile-cache suite: one table of malicious caches, each derived
// from one real cache (real Nix paths, written by the real program) by
// copying and mutating it, and what every command that touches a cache
// must do with it. Files outside the cache with unique contents (the
// sentinels, some of them targets of the cache's symlinks) show that no
// command publishes, creates, changes or removes anything outside the
// cache, and that no message carries their contents or a secret key's.

// command is a command run against a row's cache.
type command int

const (
	cVerify   command = iota // verify DIR
	cGC                      // gc --keep APP DIR
	cGCDry                   // gc --dry-run --keep APP DIR
	cCopyFrom                // copy --from DIR --to NEW
	cCopyTo                  // copy --from GOOD --to DIR (GOOD: tool and blob)
	cOut                     // --out DIR TOOL BLOB
	cHook                    // hook --out DIR, OUT_PATHS=TOOL BLOB
	cSign                    // sign --key-file KEY DIR
	cPush                    // push DIR s3://ROW-BUCKET
	nCommands
)

var commandNames = [nCommands]string{"verify", "gc", "gc-dry-run", "copy-from", "copy-to", "out", "hook", "sign", "push"}

// outcome is what a command must do with a row's cache.
type outcome struct {
	code  int    // exit status
	names bool   // its output names the hostile entry
	na    string // why the command does not apply to the row
}

var (
	ok      = outcome{code: 0}
	usage   = outcome{code: 2}
	reports = outcome{code: 1, names: true} // verify reports it; copy and push skip it and exit 1; sign refuses it; a writer refuses to write through it
	warns   = outcome{code: 0, names: true} // the hook, which never fails a build: a warning naming it
	// gc removes a hostile entry itself (never its target), reports it
	// and goes on, and succeeds; so does --dry-run, which removes nothing.
	gcReports = outcome{code: 0, names: true}
)

func na(why string) outcome { return outcome{na: why} }

// Rows whose hostile entry only readers meet: verify, gc, copy from it,
// sign and push. The writers add tool and blob, which the entry is not
// part of.
var readersReport = [nCommands]outcome{reports, gcReports, gcReports, reports, ok, ok, ok, reports, reports}

// Rows whose NAR's content is wrong, a problem of what only verify, copy,
// sign and push read: gc judges by names.
var contentBad = [nCommands]outcome{reports, ok, ok, reports, ok, ok, ok, reports, reports}

// Rows whose hostile entry is a part of the layout every command meets.
var allReport = [nCommands]outcome{reports, gcReports, gcReports, reports, reports, reports, warns, reports, reports}

// hostileCase is a row of the table.
type hostileCase struct {
	class, name string
	// mutate turns a copy of the base cache at dir into the malicious one
	// and returns the hostile entry, relative to dir ("" if none): what
	// a command's output must name.
	mutate func(t *testing.T, r *row, dir string) string
	// victims are the paths whose narinfos a command may skip or lose for
	// the entry (those referring to them too); the others must be copied,
	// pushed, kept or collected as if the cache were clean.
	victims []string
	// asIs: copy and push publish the entry as it is, whose content is
	// only verify's to judge (they copy NARs byte for byte).
	asIs bool
	// gcKeeps: gc leaves the entry (it is not one gc removes, or gc
	// stops before removing anything).
	gcKeeps bool
	// args changes a command's arguments; run replaces how it runs.
	args func(t *testing.T, c command, r *row, dir string, a []string, env map[string]string) []string
	run  func(t *testing.T, c command, r *row, dir string, args []string, env map[string]string) (int, string)
	// check checks more after a run whose exit status was as wanted.
	check func(t *testing.T, c command, r *row, dir, out string)
	want  [nCommands]outcome
}

// hostile is what every row shares: the base cache and its store paths.
type hostile struct {
	paths    map[string]string // name -> store path: allPaths, tool and blob
	base     string            // the base cache: app's closure, junk, dbg and gone
	good     string            // a clean cache of tool and blob: the source of copy --to
	nis      map[string]*narinfo.NarInfo
	keyFile  string // the signing key; keySec is its secret part
	keySec   string
	token    string // in every sentinel, unique to this run
	brokenXZ []string
	attrs    string // structured attrs of tool and blob
	s3       *s3server.Server
}

// row is one row's run: its sentinels and bucket.
type row struct {
	*hostile
	tc      *hostileCase
	outside string // the sentinels
	bucket  string
	scratch string
}

func TestHostileCaches(t *testing.T) {
	nixtest.Require(t)
	h := newHostile(t)
	h.s3.Setenv(t)
	cases := hostileCases(h)
	var mu sync.Mutex
	count, classes := 0, map[string]int{}
	cells := map[string]bool{}
	for i := range cases {
		for c := range nCommands {
			if cases[i].want[c].na == "" {
				cells[cellKey(&cases[i], c)] = true
			}
		}
	}
	for k := range pending {
		if !cells[k] {
			t.Errorf("pending names %q, which is no case of the table", k)
		}
	}
	for i := range cases {
		tc := &cases[i]
		t.Run(tc.class+"/"+tc.name, func(t *testing.T) {
			t.Parallel()
			r := h.newRow(t, tc, i)
			for c := range nCommands {
				if tc.want[c].na != "" {
					continue
				}
				mu.Lock()
				count++
				classes[tc.class]++
				mu.Unlock()
				t.Run(commandNames[c], func(t *testing.T) { r.runCommand(t, c) })
			}
		})
	}
	t.Cleanup(func() {
		t.Logf("%d cases, %d runs (case × command) over %d classes, %d of them pending: %v", len(cases), count, len(classes), len(pending), classes)
	})
}

// newHostile builds the base cache once: real Nix paths (ci.nix's app
// with its closure, junk, and added paths: dbg with a debug info file,
// gone, deleted from the local store once cached) written by the real
// program with listings and debug info; and the clean cache of tool and
// blob (1.5 MiB of incompressible data, for xz) that copy --to copies.
func newHostile(t *testing.T) *hostile {
	t.Helper()
	p := ciPaths(t)
	var b [16]byte
	_, _ = rand.Read(b[:])
	token, run := "sentinel"+hex.EncodeToString(b[:8]), hex.EncodeToString(b[8:])
	added := testkit.AddToNix(t,
		testkit.Path{Name: "hostile-dbg", Files: map[string]string{"lib/debug/.build-id/ab/" + strings.Repeat("c", 38) + ".debug": "debug info"}},
		testkit.Path{Name: "hostile-blob", Files: map[string]string{"blob": string(pseudoRandom(19, 3<<19))}},
		// Unique to the run: another run's gone must not come and go
		// while this one runs.
		testkit.Path{Name: "hostile-gone", Files: map[string]string{"data": "a path no longer in the local store, run " + run + "\n"}})
	h := &hostile{token: token, paths: map[string]string{"app": p["app"], "junk": p["junk"], "tool": p["tool"], "motd": p["motd"],
		"dbg": added[0], "blob": added[1], "gone": added[2]}}
	for _, q := range strings.Fields(nixtest.Run(t, "nix-store", "--query", "--requisites", p["app"])) {
		h.paths[names([]string{q})[0]] = q
	}
	tmp := t.TempDir()
	h.base, h.good = filepath.Join(tmp, "base"), filepath.Join(tmp, "good")
	write := func(out string, paths ...string) {
		args := []string{"--out", out, "--quiet", "--nar-listing", "--index-debug-info"}
		for _, n := range paths {
			args = append(args, h.paths[n])
		}
		if code, stdout, stderr := runMain(args...); code != 0 {
			t.Fatalf("write %s: exit %d\n%s%s", out, code, stdout, stderr)
		}
	}
	write(h.base, "app", "junk", "dbg", "gone")
	write(h.good, "tool", "blob")
	// Gone from the local store: sign must check its NAR, not the store.
	nixtest.Run(t, "nix-store", "--delete", h.paths["gone"])
	h.nis = map[string]*narinfo.NarInfo{}
	byPath := map[string]string{}
	for n, sp := range h.paths {
		byPath[sp] = n
	}
	for sp, ni := range testkit.NarInfos(t, h.base) {
		h.nis[byPath[sp]] = ni
	}
	if len(h.nis) != len(allPaths) {
		t.Fatalf("base cache: %d narinfos, want %d", len(h.nis), len(allPaths))
	}

	h.keyFile = filepath.Join(tmp, "suite.sec")
	if code, _, stderr := runMain("keygen", "hostile-suite-1", "--secret-key-file", h.keyFile, "--public-key-file", filepath.Join(tmp, "suite.pub")); code != 0 {
		t.Fatalf("keygen: %s", stderr)
	}
	sec, err := os.ReadFile(h.keyFile)
	testkit.Must(t, err)
	_, h.keySec, _ = strings.Cut(strings.TrimSpace(string(sec)), ":")

	// Broken xz programs that exit 0: one prints garbage, the other a
	// valid xz stream of other content.
	for i, script := range []string{"cat >/dev/null; echo " + h.token + "-xz",
		"cat >/dev/null; echo other | xz -c"} {
		f := filepath.Join(tmp, fmt.Sprintf("broken-xz-%d", i))
		testkit.Must(t, os.WriteFile(f, []byte("#!/bin/sh\n"+script+"\n"), 0o755))
		h.brokenXZ = append(h.brokenXZ, f)
	}
	h.attrs = nixtest.Attrs(t, nil, h.paths["tool"], h.paths["blob"])
	h.s3 = s3server.Start(t)
	return h
}

// newRow makes a row's sentinels and bucket.
func (h *hostile) newRow(t *testing.T, tc *hostileCase, i int) *row {
	t.Helper()
	r := &row{hostile: h, tc: tc, bucket: fmt.Sprintf("row-%03d", i)}
	h.s3.MakeBucket(t, r.bucket, s3server.Private)
	return r
}

// withOutside is the row for one command: its own scratch directory and
// sentinels, so that what a command does to them is its own.
func (r *row) withOutside(t *testing.T) *row {
	t.Helper()
	h := r.hostile
	rc := *r
	rc.scratch = t.TempDir()
	rc.outside = filepath.Join(rc.scratch, "outside")
	o := rc.outside
	secret := []byte(h.token + "-secret\n")
	junk := h.nis["junk"]
	narinfoText := strings.Replace(junk.String(), "Deriver: "+junk.Deriver, "Deriver: "+junk.Deriver[:33]+h.token+".drv", 1)
	files := map[string]string{
		"secret":              string(secret),
		"file-narinfo":        narinfoText,
		"file-listing":        `{"version":1,"root":{"type":"directory","entries":{"` + h.token + `":{"type":"regular","size":1,"narOffset":400}}}}`,
		"file-debuginfo":      `{"archive":"../` + junk.URL + `","member":"` + h.token + `"}`,
		"file-nix-cache-info": "StoreDir: /nix/store\nX-Sentinel: " + h.token + "\n",
		"dir/" + h.token:      string(secret),
		// Where the cache's layout directories point: copies of what
		// they hold, a stale-looking temporary file and a token file.
		"nar/" + cachedir.TmpPrefix + h.token:       string(secret),
		"nar/" + h.token + ".nar":                   string(secret),
		"debuginfo/" + cachedir.TmpPrefix + h.token: string(secret),
		"debuginfo/" + h.token:                      string(secret),
		"log/" + h.token:                            string(secret),
	}
	for _, n := range []string{"junk", "dbg", "gone"} {
		data, err := os.ReadFile(filepath.Join(h.base, h.nis[n].URL))
		testkit.Must(t, err)
		files[h.nis[n].URL] = string(data)
	}
	dbgEntries, err := filepath.Glob(filepath.Join(h.base, "debuginfo", "*"))
	testkit.Must(t, err)
	for _, f := range dbgEntries {
		data, err := os.ReadFile(f)
		testkit.Must(t, err)
		files["debuginfo/"+filepath.Base(f)] = string(data)
	}
	for name, data := range files {
		f := filepath.Join(o, name)
		testkit.Must(t, os.MkdirAll(filepath.Dir(f), 0o755))
		testkit.Must(t, os.WriteFile(f, []byte(data), 0o600))
	}
	// A flake that, evaluated, fails with the token.
	testkit.Must(t, os.MkdirAll(filepath.Join(o, "flake", "sub"), 0o755))
	testkit.Must(t, os.WriteFile(filepath.Join(o, "flake", "flake.nix"), []byte(`{ outputs = _: throw "`+h.token+`-evaluated"; }`+"\n"), 0o644))
	return &rc
}

// runCommand runs command c on a fresh copy of the row's cache and checks
// the outcome and what must hold whatever it is.
func (r *row) runCommand(t *testing.T, c command) {
	tc, want := r.tc, r.tc.want[c]
	if why, ok := pending[cellKey(tc, c)]; ok && os.Getenv(runPendingEnv) != "1" {
		t.Skipf("pending (%s=1 runs it): %s", runPendingEnv, why)
	}
	r = r.withOutside(t)
	work := r.scratch
	dir := filepath.Join(work, "cache")
	nixtest.Run(t, "cp", "-a", r.base, dir)
	entry := ""
	if tc.mutate != nil {
		entry = tc.mutate(t, r, dir)
	}
	dst := filepath.Join(work, "dst")
	outsideBefore := testkit.Tree(t, r.outside)
	cacheBefore := testkit.Tree(t, dir)
	var args []string
	env := map[string]string{}
	switch c {
	case cVerify:
		args = []string{"verify", dir}
	case cGC:
		args = []string{"gc", "--keep", r.paths["app"], dir}
	case cGCDry:
		args = []string{"gc", "--dry-run", "--keep", r.paths["app"], dir}
	case cCopyFrom:
		args = []string{"copy", "--from", dir, "--to", dst}
	case cCopyTo:
		args = []string{"copy", "--from", r.good, "--to", dir}
	case cOut:
		args = []string{"--out", dir, "--quiet", "--nar-listing", "--index-debug-info", r.paths["tool"], r.paths["blob"]}
	case cHook:
		args = []string{"hook", "--out", dir, "--quiet", "--nar-listing", "--index-debug-info"}
		env["OUT_PATHS"] = r.paths["tool"] + " " + r.paths["blob"]
	case cSign:
		args = []string{"sign", "--key-file", r.keyFile, dir}
	case cPush:
		args = []string{"push", dir, r.s3.URL(r.bucket)}
	}
	if tc.args != nil {
		args = tc.args(t, c, r, dir, args, env)
	}
	var code int
	var out string
	if tc.run != nil {
		code, out = tc.run(t, c, r, dir, args, env)
	} else {
		code, out = runWithin(t, env, args)
	}
	defer func() {
		if t.Failed() {
			t.Logf("%q: exit %d, output:\n%s", args, code, out)
		}
	}()
	if code != want.code {
		t.Errorf("exit %d, want %d", code, want.code)
	} else if tc.check != nil {
		tc.check(t, c, r, dir, out)
	}
	if want.names && !namesEntry(out, dir, entry) && !(strings.HasSuffix(entry, ".narinfo") && r.storePathNamed(out, entry)) {
		t.Errorf("the output does not name %q", filepath.Join(dir, entry))
	}
	r.checkOutput(t, out)
	if d := cmp.Diff(outsideBefore, testkit.Tree(t, r.outside)); d != "" {
		t.Errorf("files outside the cache changed (-before +after):\n%s", d)
	}

	switch c {
	case cVerify, cGCDry, cCopyFrom, cPush:
		// Removing the temporary files of killed runs is every command's
		// job, under the lock.
		if d := cmp.Diff(cacheBefore, testkit.Tree(t, dir), cmpopts.IgnoreMapEntries(func(k, _ string) bool {
			return strings.HasPrefix(filepath.Base(k), cachedir.TmpPrefix)
		})); d != "" {
			t.Errorf("a reader changed the cache (-before +after):\n%s", d)
		}
	case cSign:
		if want.code != 0 && entry != "" {
			rel := filepath.Clean(entry)
			if before, after := cacheBefore[rel], testkit.Tree(t, dir)[rel]; before != after {
				t.Errorf("sign changed the entry it refused: %q -> %q", before, after)
			}
		}
	}
	switch c {
	case cGC:
		r.checkGC(t, dir, entry, code)
	case cCopyFrom:
		r.checkCopy(t, dst, code)
	case cPush:
		r.checkBucket(t, code)
	case cCopyTo, cOut, cHook:
		r.checkWritten(t, dir)
	}
}

// runWithin runs the command in-process, failing t if it does not end
// within 2 minutes (a command that hangs on a hostile cache).
func runWithin(t *testing.T, env map[string]string, args []string) (int, string) {
	t.Helper()
	done := startMain(env, args)
	select {
	case r := <-done:
		return r.code, r.out
	case <-time.After(2 * time.Minute):
		t.Fatalf("%q did not end within 2 minutes", args)
	}
	return 0, ""
}

// runPendingEnv set to 1 runs the pending cells too, to see which landed.
const runPendingEnv = "MKBINARYCACHE_RUN_PENDING"

// cellKey names a cell of the table: class/name/command.
func cellKey(tc *hostileCase, c command) string {
	return tc.class + "/" + tc.name + "/" + commandNames[c]
}

// result is how a command ended: its exit status and output.
type result struct {
	code int
	out  string
}

// startMain runs the command in-process, in the background.
func startMain(env map[string]string, args []string) <-chan result {
	done := make(chan result, 1)
	go func() {
		code, stdout, stderr := runMainEnv(func(k string) string { return env[k] }, args...)
		done <- result{code, stdout + stderr}
	}()
	return done
}

// runProgram runs a program with env added to the test's environment:
// its exit status and output.
func runProgram(t *testing.T, env map[string]string, name string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	if _, exited := err.(*exec.ExitError); err != nil && !exited {
		t.Fatalf("%s %q: %v", name, args, err)
	}
	return cmd.ProcessState.ExitCode(), b.String()
}

// namesEntry reports whether out names the entry rel of the cache dir: by
// its path, as it is or quoted, or by its name in the cache where that is
// not just a layout directory's.
func namesEntry(out, dir, rel string) bool {
	names := []string{filepath.Join(dir, rel)}
	if !slices.Contains(append(cachedir.Dirs, cachedir.InfoFile, "."), rel) {
		names = append(names, rel)
	}
	for _, n := range names {
		q := strconv.Quote(n)
		if strings.Contains(out, n) || strings.Contains(out, q[1:len(q)-1]) {
			return true
		}
	}
	return false
}

// checkOutput fails t if out carries a sentinel's contents, a secret key or
// a line a file name injected.
func (r *row) checkOutput(t *testing.T, out string) {
	t.Helper()
	if strings.Contains(out, r.token) {
		t.Errorf("the output carries the contents of a file outside the cache:\n%s", out)
	}
	if strings.Contains(out, r.keySec) {
		t.Errorf("the output carries the secret key:\n%s", out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "INJECTED") {
			t.Errorf("a file name injected the line %q into the output:\n%s", l, out)
		}
	}
}

// affected are the names of the row's victims and of the paths that
// refer to them, directly or not.
func (r *row) affected() map[string]bool {
	bad := map[string]bool{}
	for _, v := range r.tc.victims {
		bad[v] = true
	}
	for changed := true; changed; {
		changed = false
		for n, ni := range r.nis {
			for _, ref := range ni.References {
				if bad[r.nameOf(ref)] && !bad[n] {
					bad[n], changed = true, true
				}
			}
		}
	}
	return bad
}

// storePathNamed reports whether out names the store path of the base
// cache whose narinfo is rel.
func (h *hostile) storePathNamed(out, rel string) bool {
	for _, sp := range h.paths {
		if narinfo.HashPart(sp)+".narinfo" == rel {
			return strings.Contains(out, sp)
		}
	}
	return false
}

// nameOf is the name of the store path p, or of its base name.
func (h *hostile) nameOf(p string) string {
	for n, sp := range h.paths {
		if sp == p || filepath.Base(sp) == p {
			return n
		}
	}
	return ""
}

// appClosure is app's closure, what gc --keep APP keeps of a clean cache.
var appClosure = map[string]bool{"app": true, "hello": true, "libgreet": true, "motd": true, "busybox": true}

// keptClosure is what gc --keep APP keeps of the base cache when the
// victims' narinfos are lost: what app reaches without passing one.
func (r *row) keptClosure() map[string]bool {
	lost := map[string]bool{}
	for _, v := range r.tc.victims {
		lost[v] = true
	}
	kept := map[string]bool{}
	var walk func(n string)
	walk = func(n string) {
		if kept[n] || lost[n] {
			return
		}
		kept[n] = true
		for _, ref := range r.nis[n].References {
			walk(r.nameOf(ref))
		}
	}
	walk("app")
	return kept
}

// checkGC: gc never removed what it keeps; when it went on, it removed
// what it does not keep; and it removed the hostile entry itself.
func (r *row) checkGC(t *testing.T, dir, entry string, code int) {
	t.Helper()
	bad, kept := r.affected(), r.keptClosure()
	for n, ni := range r.nis {
		if bad[n] || (!kept[n] && appClosure[n]) {
			continue
		}
		_, errNI := os.Lstat(filepath.Join(dir, narinfo.HashPart(ni.StorePath)+".narinfo"))
		_, errNAR := os.Lstat(filepath.Join(dir, ni.URL))
		switch {
		case kept[n] && (errNI != nil || errNAR != nil):
			t.Errorf("gc removed %s, which it keeps: narinfo %v, NAR %v", n, errNI, errNAR)
		case !kept[n] && code != 2 && !r.tc.gcKeeps && (errNI == nil || errNAR == nil):
			t.Errorf("gc did not go on: %s, which it does not keep, is left", n)
		}
	}
	if entry != "" && code != 2 && !r.tc.gcKeeps {
		if _, err := os.Lstat(filepath.Join(dir, entry)); err == nil {
			t.Errorf("gc left the hostile entry %s", entry)
		}
	}
}

// checkCopy: the destination holds only regular files and directories,
// nothing of the sentinels, verifies, and has every path the row leaves
// alone.
func (r *row) checkCopy(t *testing.T, dst string, code int) {
	t.Helper()
	if _, err := os.Lstat(dst); err != nil {
		if code == 0 {
			t.Errorf("copy succeeded without a destination: %v", err)
		}
		return
	}
	r.checkPublishedDir(t, dst, !r.tc.asIs)
	if code == 2 {
		return
	}
	have := map[string]bool{}
	for sp := range testkit.NarInfos(t, dst) {
		have[r.nameOf(sp)] = true
	}
	bad := r.affected()
	for n := range r.nis {
		if !bad[n] && !have[n] {
			t.Errorf("copy skipped %s, which the row leaves alone", n)
		}
	}
}

// checkPublishedDir fails t unless dir, a cache a command published to,
// holds regular files and directories only, none with a sentinel's
// contents, and verifies.
func (r *row) checkPublishedDir(t *testing.T, dir string, verifies bool) {
	t.Helper()
	testkit.Must(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			t.Errorf("published %s, a %s", p, cachedir.DescribeMode(d.Type()))
			return nil
		}
		if d.Type().IsRegular() {
			data, err := os.ReadFile(p)
			testkit.Must(t, err)
			if bytes.Contains(data, []byte(r.token)) {
				t.Errorf("published %s with the contents of a file outside the cache", p)
			}
		}
		return nil
	}))
	if _, err := os.Lstat(filepath.Join(dir, cachedir.InfoFile)); err == nil && verifies {
		if code, stdout, stderr := runMain("verify", "--quiet", dir); code != 0 {
			t.Errorf("published an invalid cache: verify %s: exit %d\n%s%s", dir, code, stdout, stderr)
		}
	}
}

// checkBucket: the bucket is consistent, holds nothing of the sentinels
// and has every path the row leaves alone.
func (r *row) checkBucket(t *testing.T, code int) {
	t.Helper()
	if p := r.s3.Problems(t, r.bucket, ""); len(p) > 0 {
		t.Errorf("inconsistent bucket:\n%s", strings.Join(p, "\n"))
	}
	objs := r.s3.Objects(t, r.bucket)
	for key := range objs {
		if bytes.Contains(r.s3.Get(t, r.bucket, key), []byte(r.token)) {
			t.Errorf("published %s with the contents of a file outside the cache", key)
		}
	}
	if code == 2 {
		return
	}
	bad := r.affected()
	for n, ni := range r.nis {
		if _, ok := objs[narinfo.HashPart(ni.StorePath)+".narinfo"]; !ok && !bad[n] {
			t.Errorf("push skipped %s, which the row leaves alone", n)
		}
	}
}

// checkWritten: whatever a writer published for tool and blob is whole: a
// regular narinfo whose NAR is a regular file of nar/, a real directory,
// with the FileHash and FileSize it says.
func (r *row) checkWritten(t *testing.T, dir string) {
	t.Helper()
	for _, n := range []string{"tool", "blob"} {
		f := narinfoPath(dir, r.paths[n])
		fi, err := os.Lstat(f)
		if err != nil {
			continue
		}
		if !fi.Mode().IsRegular() {
			continue // the row's own entry, left alone
		}
		data, err := os.ReadFile(f)
		testkit.Must(t, err)
		ni, _, err := narinfo.Parse(data)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if fi, err := os.Lstat(filepath.Join(dir, "nar")); err != nil || !fi.IsDir() {
			t.Errorf("published %s without a real nar/ directory", f)
			continue
		}
		nar := filepath.Join(dir, ni.URL)
		fi, err = os.Lstat(nar)
		if err != nil || !fi.Mode().IsRegular() || filepath.Dir(nar) != filepath.Join(dir, "nar") {
			t.Errorf("published %s, whose NAR %s is not a regular file of nar/: %v", f, ni.URL, err)
			continue
		}
		data, err = os.ReadFile(nar)
		testkit.Must(t, err)
		sum := sha256.Sum256(data)
		fh := nixhash.MustNewHashWithEncoding(nixhash.SHA256, sum[:], nixhash.NixBase32, true)
		if ni.FileHash == nil || ni.FileHash.String() != fh.String() || ni.FileSize != uint64(len(data)) {
			t.Errorf("published %s over a NAR that does not match it", f)
		}
	}
}

// Mutations.

// narinfoPath is the narinfo file of the store path p in the cache dir.
func narinfoPath(dir, p string) string {
	return filepath.Join(dir, narinfo.HashPart(p)+".narinfo")
}

// narinfoFile is the narinfo of the base cache's path n in dir.
func (h *hostile) narinfoFile(dir, n string) string {
	return narinfoPath(dir, h.paths[n])
}

// narinfoRel is that file's name relative to the cache.
func (h *hostile) narinfoRel(n string) string {
	return narinfo.HashPart(h.paths[n]) + ".narinfo"
}

// symlink replaces the cache's entry rel by a symlink to target.
func symlink(t *testing.T, dir, rel, target string) string {
	t.Helper()
	testkit.Must(t, os.RemoveAll(filepath.Join(dir, rel)))
	testkit.Must(t, os.Symlink(target, filepath.Join(dir, rel)))
	return rel
}

// editNarinfo rewrites the narinfo of n: keys in set get the value (added
// at the end if missing; "" removes the line).
func (h *hostile) editNarinfo(t *testing.T, dir, n string, set map[string]string) string {
	t.Helper()
	f := h.narinfoFile(dir, n)
	data, err := os.ReadFile(f)
	testkit.Must(t, err)
	var lines []string
	done := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		k, _, _ := strings.Cut(l, ": ")
		if v, ok := set[k]; ok {
			done[k] = true
			if v == "" {
				continue
			}
			l = k + ": " + v
		}
		lines = append(lines, l)
	}
	for _, k := range slices.Sorted(maps.Keys(set)) {
		if !done[k] && set[k] != "" {
			lines = append(lines, k+": "+set[k])
		}
	}
	testkit.Must(t, os.WriteFile(f, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	return h.narinfoRel(n)
}

// rewrite replaces the narinfo of n by f of its text.
func (h *hostile) rewrite(t *testing.T, dir, n string, f func(string) string) string {
	t.Helper()
	file := h.narinfoFile(dir, n)
	data, err := os.ReadFile(file)
	testkit.Must(t, err)
	testkit.Must(t, os.WriteFile(file, []byte(f(string(data))), 0o644))
	return h.narinfoRel(n)
}

// setNAR makes data, uncompressed, the NAR of n's narinfo, with the hashes
// and sizes that fit and no signature, and returns the NAR's name.
func (h *hostile) setNAR(t *testing.T, dir, n string, data []byte) string {
	t.Helper()
	sum := sha256.Sum256(data)
	hash := nixhash.MustNewHashWithEncoding(nixhash.SHA256, sum[:], nixhash.NixBase32, true)
	url := "nar/" + hash.Format(nixhash.NixBase32, false) + ".nar"
	testkit.Must(t, os.WriteFile(filepath.Join(dir, url), data, 0o644))
	size := strconv.Itoa(len(data))
	h.editNarinfo(t, dir, n, map[string]string{"URL": url, "Compression": "none", "FileHash": hash.String(),
		"FileSize": size, "NarHash": hash.String(), "NarSize": size, "Sig": ""})
	return url
}

// nestedNAR is a NAR of directories nested depth deep: a few MB that a
// recursive reader holding each level's path needs gigabytes for.
func nestedNAR(depth int) []byte {
	var b bytes.Buffer
	str := func(s string) {
		var n [8]byte
		bin.LittleEndian.PutUint64(n[:], uint64(len(s)))
		b.Write(n[:])
		b.WriteString(s)
		b.Write(make([]byte, (8-len(s)%8)%8))
	}
	str("nix-archive-1")
	for range depth {
		for _, s := range []string{"(", "type", "directory", "entry", "(", "name", "a", "node"} {
			str(s)
		}
	}
	str("(")
	str("type")
	str("directory")
	str(")")
	for range depth {
		str(")")
		str(")")
	}
	return b.Bytes()
}

// runBinaryNoFlock runs the built command where flock(2) fails with
// ENOLCK, as on a file system without it: a seccomp filter set up by this
// test binary (see init), which then executes the command.
func runBinaryNoFlock(t *testing.T, env map[string]string, args ...string) (int, string) {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skip("the seccomp filter is written for amd64")
	}
	env = maps.Clone(env)
	env[noFlockEnv] = binary(t)
	code, out := runProgram(t, env, os.Args[0], args...)
	if code == 125 {
		t.Fatalf("the no-flock wrapper failed:\n%s", out)
	}
	return code, out
}

// duringGC runs the command while the cache is held as gc holds it, in
// the state of a gc half done (a NAR gone before its narinfo): the command
// must wait for the lock, and then do its work on a whole cache.
func duringGC(t *testing.T, c command, r *row, dir string, args []string, env map[string]string) (int, string) {
	t.Helper()
	// The lock gc holds: an exclusive flock on the cache directory.
	lock, err := os.Open(dir)
	testkit.Must(t, err)
	defer lock.Close()
	testkit.Must(t, syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB))
	nar := filepath.Join(dir, r.nis["junk"].URL)
	aside := filepath.Join(r.scratch, "aside")
	testkit.Must(t, os.Rename(nar, aside))
	done := startMain(env, args)
	select {
	case res := <-done:
		t.Errorf("%s ran while gc held the cache", commandNames[c])
		testkit.Must(t, os.Rename(aside, nar))
		return res.code, res.out
	case <-time.After(2 * time.Second):
		// Still waiting, as it should: one that ignored the lock would
		// have ended by now, or would soon, on the half-done cache;
		// either way it cannot pass the checks after on a slow machine.
	}
	testkit.Must(t, os.Rename(aside, nar))
	lock.Close()
	select {
	case res := <-done:
		return res.code, res.out
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s did not end within 2 minutes of the lock's release", commandNames[c])
	}
	return 0, ""
}

// noFlockEnv names, in the environment of this test binary, a program to
// execute under a seccomp filter that makes flock(2) fail with ENOLCK.
const noFlockEnv = "MKBINARYCACHE_TEST_EXEC_WITHOUT_FLOCK"

func init() {
	prog := os.Getenv(noFlockEnv)
	if prog == "" {
		return
	}
	runtime.LockOSThread() // the filter applies to this thread, and exec keeps it
	if err := denyFlock(); err != nil {
		fmt.Fprintf(os.Stderr, "no-flock wrapper: %v\n", err)
		os.Exit(125)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, noFlockEnv+"=") {
			env = append(env, kv)
		}
	}
	err := syscall.Exec(prog, append([]string{prog}, os.Args[1:]...), env)
	fmt.Fprintf(os.Stderr, "no-flock wrapper: exec %s: %v\n", prog, err)
	os.Exit(125)
}
