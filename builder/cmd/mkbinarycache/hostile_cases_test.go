package main_test

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// allPaths are the names of the base cache's paths.
var allPaths = []string{"app", "hello", "libgreet", "motd", "busybox", "junk", "dbg", "gone"}

// hostileCases is the table. Columns of want, in order: verify, gc,
// gc --dry-run, copy from it, copy into it, --out into it, hook into it,
// sign, push.
func hostileCases(h *hostile) []hostileCase {
	nar := func(n string) string { return h.nis[n].URL }
	ls := func(n string) string { return narinfo.HashPart(h.paths[n]) + ".ls" }
	onlyGC := func(o outcome) [nCommands]outcome {
		w := [nCommands]outcome{}
		for c := range w {
			w[c] = na("takes no keep set")
		}
		w[cGC], w[cGCDry] = o, o
		return w
	}
	only := func(o outcome, why string, cs ...command) [nCommands]outcome {
		w := [nCommands]outcome{}
		for c := range w {
			w[c] = na(why)
			if slices.Contains(cs, command(c)) {
				w[c] = o
			}
		}
		return w
	}
	with := func(w [nCommands]outcome, c command, o outcome) [nCommands]outcome { w[c] = o; return w }
	keepFile := func(content string) func(*testing.T, command, *row, string, []string, map[string]string) []string {
		return func(t *testing.T, c command, r *row, dir string, a []string, env map[string]string) []string {
			f := filepath.Join(r.scratch, "keep-"+commandNames[c])
			testkit.Must(t, os.WriteFile(f, []byte(content), 0o644))
			for i := range a {
				if a[i] == "--keep" {
					a[i] = "--keep-file"
					a[i+1] = f
				}
			}
			return a
		}
	}
	// storeArg puts arg where a command takes store paths; the hook's
	// come from Nix, in OUT_PATHS.
	storeArg := func(arg func(r *row) string) func(*testing.T, command, *row, string, []string, map[string]string) []string {
		return func(t *testing.T, c command, r *row, dir string, a []string, env map[string]string) []string {
			switch c {
			case cHook:
				env["OUT_PATHS"] = arg(r)
			case cOut:
				return append(a[:len(a)-2], arg(r))
			case cCopyFrom, cCopyTo:
				return append(a, arg(r))
			case cGC, cGCDry:
				for i := range a {
					if a[i] == "--keep" {
						a[i+1] = arg(r)
					}
				}
			}
			return a
		}
	}
	// The hook never fails a build: it warns, naming the path.
	badArgs := [nCommands]outcome{na("takes no store path"), usage, usage, usage, usage, usage,
		{code: 0}, na("takes no store path"), na("takes no store path")}
	hookNamesArg := func(t *testing.T, c command, r *row, dir, out string) {
		t.Helper()
		if c == cHook && !strings.Contains(out, "warning") {
			t.Errorf("no warning that the path was not added")
		}
	}
	flagArg := func(flag, value string) func(*testing.T, command, *row, string, []string, map[string]string) []string {
		return func(t *testing.T, c command, r *row, dir string, a []string, env map[string]string) []string {
			return append([]string{a[0], flag, value}, a[1:]...)
		}
	}
	noNarinfoLost := func(t *testing.T, c command, r *row, dir, out string) {
		t.Helper()
		if n := len(narinfoNames(t, dir)); n != len(allPaths) {
			t.Errorf("%d narinfos left of %d", n, len(allPaths))
		}
	}
	brokenXZ := func(i int) hostileCase {
		return hostileCase{class: "unbounded", name: "broken external xz " + []string{"printing garbage", "printing other content"}[i],
			args: func(t *testing.T, c command, r *row, dir string, a []string, env map[string]string) []string {
				return append(a, "--compression", "xz", "--xz-program", r.brokenXZ[i])
			},
			check: func(t *testing.T, c command, r *row, dir, out string) {
				t.Helper()
				if _, err := os.Lstat(narinfoPath(dir, r.paths["blob"])); err == nil {
					t.Errorf("published blob, compressed by a broken xz")
				}
				if code, stdout, stderr := runMain("verify", "--quiet", dir); code != 0 {
					t.Errorf("verify: exit %d\n%s%s", code, stdout, stderr)
				}
				if c == cOut && !strings.Contains(out, r.paths["blob"]) {
					t.Errorf("the error does not name blob, compressed by a broken xz")
				}
			},
			want: [nCommands]outcome{na("compresses nothing"), na("compresses nothing"), na("compresses nothing"), na("compresses nothing"),
				na("copies NARs as they are"), {code: 1}, {code: 0}, na("compresses nothing"), na("compresses nothing")}}
	}
	// measured runs the command with its data segment (the Go heap
	// included) limited, so that a command whose memory grows with the
	// input's nesting or size dies rather than pass.
	measured := func(t *testing.T, c command, r *row, dir string, args []string, env map[string]string) (int, string) {
		t.Helper()
		return runProgram(t, env, "prlimit", append([]string{"--data=" + strconv.Itoa(512<<20), binary(t)}, args...)...)
	}

	return []hostileCase{
		// Symlinks inside the cache.
		{class: "symlinks", name: "narinfo to a file outside", victims: []string{"junk"}, want: readersReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				return symlink(t, dir, h.narinfoRel("junk"), filepath.Join(r.outside, "file-narinfo"))
			}},
		{class: "symlinks", name: "kept narinfo to a file outside", victims: []string{"hello"}, want: readersReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				return symlink(t, dir, h.narinfoRel("hello"), filepath.Join(r.outside, "file-narinfo"))
			}},
		{class: "symlinks", name: "narinfo to another narinfo", victims: []string{"junk"}, want: readersReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				return symlink(t, dir, h.narinfoRel("junk"), h.narinfoRel("hello"))
			}},
		{class: "symlinks", name: "listing", victims: []string{"app"}, want: with(readersReport, cSign, ok),
			mutate: func(t *testing.T, r *row, dir string) string {
				return symlink(t, dir, ls("app"), filepath.Join(r.outside, "file-listing"))
			}},
		{class: "symlinks", name: "debuginfo entry", victims: []string{"dbg"}, want: with(readersReport, cSign, ok),
			mutate: func(t *testing.T, r *row, dir string) string {
				entries, _ := filepath.Glob(filepath.Join(dir, "debuginfo", "*"))
				rel, _ := filepath.Rel(dir, entries[0])
				return symlink(t, dir, rel, filepath.Join(r.outside, "file-debuginfo"))
			}},
		{class: "symlinks", name: "NAR to a file outside", victims: []string{"gone"}, want: readersReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				return symlink(t, dir, nar("gone"), filepath.Join(r.outside, "secret"))
			}},
		{class: "symlinks", name: "NAR to a kept NAR", victims: []string{"junk"}, want: readersReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				return symlink(t, dir, nar("junk"), filepath.Base(nar("motd")))
			}},
		{class: "symlinks", name: "build log", want: with(readersReport, cSign, ok),
			mutate: func(t *testing.T, r *row, dir string) string {
				testkit.Must(t, os.MkdirAll(filepath.Join(dir, "log"), 0o755))
				return symlink(t, dir, "log/"+h.nis["app"].Deriver, filepath.Join(r.outside, "secret"))
			}},
		{class: "symlinks", name: "nar dir", victims: allPaths, want: allReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				return symlink(t, dir, "nar", filepath.Join(r.outside, "nar"))
			}},
		{class: "symlinks", name: "debuginfo dir", victims: []string{"dbg"}, want: with(allReport, cSign, ok),
			mutate: func(t *testing.T, r *row, dir string) string {
				return symlink(t, dir, "debuginfo", filepath.Join(r.outside, "debuginfo"))
			}},
		{class: "symlinks", name: "log dir", want: with(allReport, cSign, ok),
			mutate: func(t *testing.T, r *row, dir string) string {
				return symlink(t, dir, "log", filepath.Join(r.outside, "log"))
			}},
		{class: "symlinks", name: "realisations dir", want: with(allReport, cSign, ok),
			mutate: func(t *testing.T, r *row, dir string) string {
				return symlink(t, dir, "realisations", filepath.Join(r.outside, "dir"))
			}},
		{class: "symlinks", name: "build-trace-v2 dir", want: with(allReport, cSign, ok),
			mutate: func(t *testing.T, r *row, dir string) string {
				return symlink(t, dir, "build-trace-v2", filepath.Join(r.outside, "dir"))
			}},
		{class: "symlinks", name: "nix-cache-info", victims: allPaths, gcKeeps: true, check: noNarinfoLost,
			// Not a cache any more: gc stops before removing anything.
			want: with(with(allReport, cGC, reports), cGCDry, reports),
			mutate: func(t *testing.T, r *row, dir string) string {
				return symlink(t, dir, cachedir.InfoFile, filepath.Join(r.outside, "file-nix-cache-info"))
			}},

		// What a narinfo's URL names.
		{class: "url", name: "nix-cache-info", victims: []string{"junk"}, want: readersReport,
			check: func(t *testing.T, c command, r *row, dir, out string) {
				if _, err := os.Stat(filepath.Join(dir, cachedir.InfoFile)); err != nil {
					t.Errorf("nix-cache-info is gone: %v", err)
				}
			},
			mutate: func(t *testing.T, r *row, dir string) string {
				return h.editNarinfo(t, dir, "junk", map[string]string{"URL": cachedir.InfoFile})
			}},
		{class: "url", name: "another narinfo", victims: []string{"junk"}, want: readersReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				return h.editNarinfo(t, dir, "junk", map[string]string{"URL": h.narinfoRel("hello")})
			}},
		{class: "url", name: "nar-dot-dot another narinfo", victims: []string{"junk"}, want: readersReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				return h.editNarinfo(t, dir, "junk", map[string]string{"URL": "nar/../" + h.narinfoRel("app")})
			}},
		{class: "url", name: "dot-dot to a file outside", victims: []string{"junk"}, want: readersReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				rel, err := filepath.Rel(dir, filepath.Join(r.outside, "secret"))
				testkit.Must(t, err)
				return h.editNarinfo(t, dir, "junk", map[string]string{"URL": rel})
			}},
		{class: "url", name: "absolute path outside", victims: []string{"junk"}, want: readersReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				return h.editNarinfo(t, dir, "junk", map[string]string{"URL": filepath.Join(r.outside, "secret")})
			}},
		{class: "url", name: "NAR in a subdirectory of nar", victims: []string{"junk"}, want: readersReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				sub := "nar/sub/" + filepath.Base(nar("junk"))
				testkit.Must(t, os.Mkdir(filepath.Join(dir, "nar", "sub"), 0o755))
				testkit.Must(t, os.Rename(filepath.Join(dir, nar("junk")), filepath.Join(dir, sub)))
				return h.editNarinfo(t, dir, "junk", map[string]string{"URL": sub})
			}},

		// An empty keep set.
		{class: "empty-keep", name: "empty keep file", args: keepFile(""), check: noNarinfoLost, want: onlyGC(usage)},
		{class: "empty-keep", name: "keep file of comments and blanks", args: keepFile("# roots\n\n   \n# none\n"), check: noNarinfoLost, want: onlyGC(usage)},

		// sign signs only what it checked.
		{class: "sign", name: "unsigned narinfo with another path's NAR", victims: []string{"junk"},
			want: [nCommands]outcome{ok, ok, ok, ok, ok, ok, ok, reports, ok},
			mutate: func(t *testing.T, r *row, dir string) string {
				m := h.nis["motd"]
				testkit.Must(t, os.Remove(filepath.Join(dir, ls("junk"))))
				return h.editNarinfo(t, dir, "junk", map[string]string{"URL": m.URL, "Compression": m.Compression,
					"FileHash": m.FileHash.String(), "FileSize": itoa(m.FileSize), "NarHash": m.NarHash.String(), "NarSize": itoa(m.NarSize)})
			}},
		{class: "sign", name: "invalid signature by the signer's key", victims: []string{"junk"},
			want: [nCommands]outcome{ok, ok, ok, ok, ok, ok, ok, reports, ok},
			mutate: func(t *testing.T, r *row, dir string) string {
				return h.editNarinfo(t, dir, "junk", map[string]string{"Sig": "hostile-suite-1:" + base64.StdEncoding.EncodeToString(make([]byte, 64))})
			}},

		// Narinfos Nix rejects.
		{class: "nix-rejects", name: "CRLF line endings", victims: []string{"junk"}, want: readersReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				return h.rewrite(t, dir, "junk", func(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") })
			}},
		{class: "nix-rejects", name: "no final newline", victims: []string{"hello"}, want: readersReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				return h.rewrite(t, dir, "hello", func(s string) string { return strings.TrimSuffix(s, "\n") })
			}},
		{class: "nix-rejects", name: "References twice", victims: []string{"hello"}, want: readersReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				return h.rewrite(t, dir, "hello", func(s string) string {
					i := strings.Index(s, "References: ")
					line := s[i : i+strings.Index(s[i:], "\n")+1]
					return s + line
				})
			}},
		{class: "nix-rejects", name: "malformed CA", victims: []string{"junk"}, want: readersReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				return h.editNarinfo(t, dir, "junk", map[string]string{"CA": "fixed:sha256:bogus"})
			}},
		{class: "nix-rejects", name: "malformed References", victims: []string{"junk"}, want: readersReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				return h.editNarinfo(t, dir, "junk", map[string]string{"References": "not-a-store-path"})
			}},

		// Arguments that are not store paths never reach Nix.
		{class: "arguments", name: "relative store path", want: badArgs, check: hookNamesArg,
			args: storeArg(func(r *row) string { return strings.TrimPrefix(r.paths["tool"], "/") })},
		{class: "arguments", name: "a flake in a directory", want: badArgs, check: hookNamesArg,
			args: storeArg(func(r *row) string { return filepath.Join(r.outside, "flake", "sub") })},
		{class: "arguments", name: "flake reference", want: badArgs, check: hookNamesArg,
			args: storeArg(func(r *row) string { return filepath.Join(r.outside, "flake") + "#x" })},
		{class: "arguments", name: "a file inside a store path", want: badArgs, check: hookNamesArg,
			args: storeArg(func(r *row) string { return r.paths["tool"] + "/bin" })},
		{class: "arguments", name: "result symlink", want: [nCommands]outcome{na("takes no store path"), ok, ok, ok, ok, ok,
			na("its paths come from Nix"), na("takes no store path"), na("takes no store path")},
			args: func(t *testing.T, c command, r *row, dir string, a []string, env map[string]string) []string {
				link := filepath.Join(r.scratch, "result")
				switch c {
				case cGC, cGCDry:
					testkit.Must(t, os.Symlink(r.paths["app"], link))
					a[slices.Index(a, "--keep")+1] = link
					return a
				case cOut:
					testkit.Must(t, os.Symlink(r.paths["tool"], link))
					return append(a[:len(a)-2], link)
				case cCopyFrom:
					testkit.Must(t, os.Symlink(r.paths["app"], link))
					return append(a, link, r.paths["junk"], r.paths["dbg"], r.paths["gone"])
				}
				testkit.Must(t, os.Symlink(r.paths["tool"], link))
				return append(a, link)
			}},
		{class: "arguments", name: "options after the paths", want: [nCommands]outcome{ok, ok, ok, ok, ok, ok, na("takes no arguments"), ok, ok},
			args: func(t *testing.T, c command, r *row, dir string, a []string, env map[string]string) []string {
				switch c {
				case cOut:
					return append(a, "--compression", "xz", "--xz-program", "none")
				case cCopyFrom:
					return append(a, r.paths["app"], r.paths["junk"], r.paths["dbg"], r.paths["gone"], "--quiet")
				case cCopyTo:
					return append(a, r.paths["tool"], "--quiet")
				case cGC, cGCDry:
					return append([]string{"gc", dir}, a[1:len(a)-1]...)
				case cPush:
					return append(a, "--quiet")
				}
				return append([]string{a[0], dir}, append(a[1:len(a)-1], "--quiet")...)
			},
			check: func(t *testing.T, c command, r *row, dir, out string) {
				t.Helper()
				switch c {
				case cOut:
					for _, n := range []string{"tool", "blob"} {
						if ni := testkit.NarInfos(t, dir)[r.paths[n]]; ni == nil || ni.Compression != "xz" {
							t.Errorf("--compression xz after the paths was not applied to %s", n)
						}
					}
				case cCopyFrom, cCopyTo, cPush, cVerify, cSign:
					// What each prints only without --quiet.
					for _, w := range []string{"\ncopied ", "uploaded ", " checked", " already signed by "} {
						if strings.Contains("\n"+out, w) {
							t.Errorf("--quiet after the arguments was not applied:\n%s", out)
						}
					}
				}
			}},

		// Existing destination files are checked by hash.
		{class: "existing-nar", name: "corrupt NAR of the right size in the destination",
			want: [nCommands]outcome{ok, ok, ok, ok, ok, ok, ok, ok, ok},
			mutate: func(t *testing.T, r *row, dir string) string {
				ni := testkit.NarInfos(t, h.good)[h.paths["tool"]]
				data, err := os.ReadFile(filepath.Join(h.good, ni.URL))
				testkit.Must(t, err)
				data[len(data)/2] ^= 0xff
				testkit.Must(t, os.WriteFile(filepath.Join(dir, ni.URL), data, 0o644))
				return ni.URL
			},
			check: func(t *testing.T, c command, r *row, dir, out string) {
				t.Helper()
				if c == cCopyTo || c == cOut || c == cHook {
					if _, err := os.Lstat(narinfoPath(dir, r.paths["tool"])); err != nil {
						t.Errorf("tool was not added: %v", err)
					}
				}
			}},
		{class: "existing-nar", name: "corrupt NAR of the right size in the source", victims: []string{"gone"}, want: contentBad,
			mutate: func(t *testing.T, r *row, dir string) string {
				f := filepath.Join(dir, nar("gone"))
				data, err := os.ReadFile(f)
				testkit.Must(t, err)
				data[len(data)/2] ^= 0xff
				testkit.Must(t, os.WriteFile(f, data, 0o644))
				return h.narinfoRel("gone")
			}},

		// Bounded work on small inputs.
		{class: "unbounded", name: "deeply nested NAR", victims: []string{"junk"}, run: measured, asIs: true,
			want: [nCommands]outcome{reports, ok, ok, ok, ok, ok, ok, reports, ok},
			mutate: func(t *testing.T, r *row, dir string) string {
				h.setNAR(t, dir, "junk", nestedNAR(30000))
				testkit.Must(t, os.Remove(filepath.Join(dir, ls("junk"))))
				return h.narinfoRel("junk")
			}},
		{class: "unbounded", name: "huge narinfo", victims: []string{"junk"}, run: measured, want: readersReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				var refs strings.Builder
				for i := range 250000 {
					refs.WriteString(testkit.HashPartOfName(itoa(uint64(i))) + "-r ")
				}
				return h.editNarinfo(t, dir, "junk", map[string]string{"References": strings.TrimSpace(refs.String())})
			}},
		brokenXZ(0),
		brokenXZ(1),

		// Locks.
		{class: "locks", name: "while gc holds the cache", run: duringGC, want: [nCommands]outcome{ok, ok, ok, ok, ok, ok, ok, ok, ok}},
		{class: "locks", name: "no flock", gcKeeps: true,
			want: [nCommands]outcome{ok, {code: 1, names: true}, ok, {code: 0}, warns, warns,
				na("the hook asks Nix, which needs flock itself"), na("sign asks Nix, which needs flock itself"), ok},
			mutate: func(t *testing.T, r *row, dir string) string { return "." },
			args: func(t *testing.T, c command, r *row, dir string, a []string, env map[string]string) []string {
				if c == cOut { // no Nix: it needs flock itself
					return append(a[:len(a)-2], "--attrs", r.attrs)
				}
				return a
			},
			run: func(t *testing.T, c command, r *row, dir string, args []string, env map[string]string) (int, string) {
				return runBinaryNoFlock(t, env, args...)
			},
			check: func(t *testing.T, c command, r *row, dir, out string) {
				t.Helper()
				switch c {
				case cGC:
					noNarinfoLost(t, c, r, dir, out)
				case cCopyFrom, cCopyTo, cOut:
					if !strings.Contains(out, "warning") {
						t.Errorf("no warning that the cache is not locked:\n%s", out)
					}
				}
			}},

		// Small gaps.
		{class: "gaps", name: "negative --jobs", args: flagArg("--jobs", "-1"),
			want: [nCommands]outcome{usage, na("has no --jobs"), na("has no --jobs"), usage, usage, usage, usage, usage, usage}},
		{class: "gaps", name: "negative --threads", args: flagArg("--threads", "-1"), want: only(usage, "has no --threads", cOut, cPush)},
		{class: "gaps", name: "negative --priority", args: flagArg("--priority", "-1"), want: only(usage, "has no --priority", cOut)},
		{class: "gaps", name: "verify --public-key with a secret key", want: only(usage, "the case is verify's", cVerify),
			args: func(t *testing.T, c command, r *row, dir string, a []string, env map[string]string) []string {
				sec, err := os.ReadFile(r.keyFile)
				testkit.Must(t, err)
				return []string{"verify", "--public-key", strings.TrimSpace(string(sec)), dir}
			}},
		{class: "gaps", name: "verify --public-key with a secret key file", want: only(usage, "the case is verify's", cVerify),
			args: func(t *testing.T, c command, r *row, dir string, a []string, env map[string]string) []string {
				return []string{"verify", "--public-key", r.keyFile, dir}
			}},
		{class: "gaps", name: "copy --to the source's own nar dir", want: only(usage, "the case is copy's", cCopyTo),
			args: func(t *testing.T, c command, r *row, dir string, a []string, env map[string]string) []string {
				return []string{"copy", "--from", dir, "--to", filepath.Join(dir, "nar")}
			},
			check: func(t *testing.T, c command, r *row, dir, out string) {
				want, _ := os.ReadDir(filepath.Join(r.base, "nar"))
				if got, _ := os.ReadDir(filepath.Join(dir, "nar")); len(got) != len(want) {
					t.Errorf("nar/ holds %d entries, want the %d NARs", len(got), len(want))
				}
			}},

		// More: special files, hard links, names.
		{class: "more", name: "FIFO as a narinfo", victims: []string{"junk"}, want: readersReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				f := h.narinfoFile(dir, "junk")
				testkit.Must(t, os.Remove(f))
				testkit.Must(t, syscall.Mkfifo(f, 0o644))
				return h.narinfoRel("junk")
			}},
		{class: "more", name: "FIFO as a NAR", victims: []string{"gone"}, want: readersReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				f := filepath.Join(dir, nar("gone"))
				testkit.Must(t, os.Remove(f))
				testkit.Must(t, syscall.Mkfifo(f, 0o644))
				return nar("gone")
			}},
		{class: "more", name: "hard link to a file outside as a NAR", victims: []string{"gone"}, want: contentBad,
			mutate: func(t *testing.T, r *row, dir string) string {
				f := filepath.Join(dir, nar("gone"))
				testkit.Must(t, os.Remove(f))
				testkit.Must(t, os.Link(filepath.Join(r.outside, "secret"), f))
				return h.narinfoRel("gone")
			}},
		{class: "more", name: "directory as a narinfo", victims: []string{"junk"}, want: readersReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				f := h.narinfoFile(dir, "junk")
				testkit.Must(t, os.Remove(f))
				testkit.Must(t, os.Mkdir(f, 0o755))
				testkit.Must(t, os.WriteFile(filepath.Join(f, "x"), []byte("x\n"), 0o644))
				return h.narinfoRel("junk")
			}},
		{class: "more", name: "directory as a NAR", victims: []string{"gone"}, want: readersReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				f := filepath.Join(dir, nar("gone"))
				testkit.Must(t, os.Remove(f))
				testkit.Must(t, os.Mkdir(f, 0o755))
				return nar("gone")
			}},
		{class: "more", name: "file as nar dir", victims: allPaths, want: allReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				testkit.Must(t, os.RemoveAll(filepath.Join(dir, "nar")))
				testkit.Must(t, os.WriteFile(filepath.Join(dir, "nar"), []byte("x\n"), 0o644))
				return "nar"
			}},
		{class: "more", name: "file as debuginfo dir", victims: []string{"dbg"}, want: with(allReport, cSign, ok),
			mutate: func(t *testing.T, r *row, dir string) string {
				testkit.Must(t, os.RemoveAll(filepath.Join(dir, "debuginfo")))
				testkit.Must(t, os.WriteFile(filepath.Join(dir, "debuginfo"), []byte("x\n"), 0o644))
				return "debuginfo"
			}},
		{class: "more", name: "narinfo name with a newline", want: readersReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				data, err := os.ReadFile(h.narinfoFile(dir, "junk"))
				testkit.Must(t, err)
				name := "0\nINJECTED: all good.narinfo"
				testkit.Must(t, os.WriteFile(filepath.Join(dir, name), data, 0o644))
				return name
			}},
		{class: "more", name: "narinfo under another hash", want: readersReport,
			mutate: func(t *testing.T, r *row, dir string) string {
				data, err := os.ReadFile(h.narinfoFile(dir, "hello"))
				testkit.Must(t, err)
				name := testkit.HashPartOfName("elsewhere") + ".narinfo"
				testkit.Must(t, os.WriteFile(filepath.Join(dir, name), data, 0o644))
				return name
			}},
		{class: "more", name: "huge FileSize", victims: []string{"junk"},
			want: [nCommands]outcome{reports, ok, ok, reports, ok, ok, ok, reports, reports},
			mutate: func(t *testing.T, r *row, dir string) string {
				return h.editNarinfo(t, dir, "junk", map[string]string{"FileSize": "18446744073709551615"})
			}},
		{class: "more", name: "temporary-file symlink in nar dir", want: [nCommands]outcome{ok, ok, ok, ok, ok, ok, ok, ok, ok},
			mutate: func(t *testing.T, r *row, dir string) string {
				return symlink(t, dir, "nar/"+cachedir.TmpPrefix+"x", filepath.Join(r.outside, "secret"))
			}},
		{class: "more", name: "temporary-file symlink beside the narinfos", want: [nCommands]outcome{ok, ok, ok, ok, ok, ok, ok, ok, ok},
			mutate: func(t *testing.T, r *row, dir string) string {
				return symlink(t, dir, cachedir.TmpPrefix+"x", filepath.Join(r.outside, "file-narinfo"))
			}},
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
