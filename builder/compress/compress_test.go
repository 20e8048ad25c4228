package compress

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// sample is compressible but not trivial: text with random runs.
func sample(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("nix store path closure narinfo reference deriver hash compression zstd xz bzip2")
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(10) == 0 {
			for range 16 {
				b.WriteByte(byte(r.Uint32()))
			}
		}
		b.WriteByte(' ')
	}
	return b.Bytes()[:n]
}

func encode(t *testing.T, m Method, o Options, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, m, o)
	if err != nil {
		t.Fatal(err)
	}
	// Odd-sized writes, as a NAR dumper makes them.
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 12345)
		if _, err := w.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	data := sample(3 << 20)
	for _, m := range Methods {
		t.Run(string(m), func(t *testing.T) {
			enc := encode(t, m, Options{Threads: 2}, data)
			if m != None && len(enc) >= len(data) {
				t.Errorf("%s did not compress: %d -> %d bytes", m, len(data), len(enc))
			}
			r, err := NewReader(bytes.NewReader(enc), m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("%s round trip changed the data (%d bytes in, %d out)", m, len(data), len(got))
			}
		})
	}
}

// The cache must be byte-identical whatever the core count. 12 MiB with the
// default chunks (zstd 16 MiB, others 8) is one or two chunks; 1 MiB chunks
// make 13, compressed in parallel, the last one so small that zstd
// compresses it at another level.
func TestDeterministicAcrossThreads(t *testing.T) {
	data := sample(12<<20 + zstdBetterBelow/2)
	for _, m := range []Method{Zstd, XZ, Bzip2} {
		for _, chunk := range []int{0, 1 << 20} {
			t.Run(fmt.Sprintf("%s-%d", m, chunk), func(t *testing.T) {
				if m != Zstd && testing.Short() {
					t.Skip("slow")
				}
				o := Options{Threads: 1, chunkSize: chunk}
				want := encode(t, m, o, data)
				for _, threads := range []int{2, 8} {
					o.Threads = threads
					if got := encode(t, m, o, data); !bytes.Equal(got, want) {
						t.Errorf("%s with %d threads: %d bytes differ from 1 thread's %d", m, threads, len(got), len(want))
					}
				}
			})
		}
	}
}

// Chunked streams decode as one, at every boundary case: empty input, less
// than a chunk, exactly one and several chunks, and a partial last chunk;
// each chunk is a complete stream of its own.
func TestChunks(t *testing.T) {
	const chunk = 64 << 10
	data := sample(5*chunk + 123)
	for _, m := range []Method{Zstd, XZ, Bzip2} {
		for _, n := range []int{0, 1, chunk - 1, chunk, 2 * chunk, len(data)} {
			enc := encode(t, m, Options{Threads: 3, chunkSize: chunk}, data[:n])
			if len(enc) == 0 {
				t.Errorf("%s, %d bytes: empty output (not a valid stream)", m, n)
			}
			r, err := NewReader(bytes.NewReader(enc), m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, data[:n]) {
				t.Errorf("%s, %d bytes in %d-byte chunks: round trip gave %d bytes, %v", m, n, chunk, len(got), err)
			}
		}
	}
}

// An external xz makes streams that our decoder (and Nix's) reads, and its
// output does not depend on the thread count either.
func TestXZProgram(t *testing.T) {
	xzPath, err := exec.LookPath("xz")
	if err != nil {
		t.Skip("no xz on PATH")
	}
	data := sample(3 << 20)
	o := Options{Threads: 1, chunkSize: 1 << 20, XZProgram: xzPath}
	want := encode(t, XZ, o, data)
	o.Threads = 4
	if got := encode(t, XZ, o, data); !bytes.Equal(got, want) {
		t.Errorf("xz program: 4 threads differ from 1")
	}
	r, err := NewReader(bytes.NewReader(want), XZ)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, data) {
		t.Errorf("xz program: round trip failed: %v", err)
	}
	o.XZProgram = "/nonexistent/xz"
	w, err := NewWriter(io.Discard, XZ, o)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), "/nonexistent/xz") {
		t.Errorf("missing xz program: error %v", err)
	}
	// Inputs under XZProgramMinSize never start it: they are compressed
	// in-process, whatever the program.
	small := data[:XZProgramMinSize-1]
	r, err = NewReader(bytes.NewReader(encode(t, XZ, o, small)), XZ)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, small) {
		t.Errorf("small input, missing xz program: round trip failed: %v", err)
	}
}

// An external xz is trusted for speed, not for its output: whatever a
// broken one writes and however it exits, only output that decompresses to
// the input byte for byte gets through, and the error names the program.
func TestXZProgramBroken(t *testing.T) {
	dir := t.TempDir()
	data := sample(2 << 20)
	o := Options{Threads: 1, chunkSize: 4 << 20} // one chunk
	files := map[string][]byte{
		"valid": encode(t, XZ, o, data),
		"other": encode(t, XZ, o, bytes.ToUpper(data)),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ name, script, want string }{
		{"garbage", "printf 'not xz at all'", "exited without error, but its output does not decompress to its input"},
		{"nothing", "true", "exited without error, but its output does not decompress to its input"},
		{"truncated", "head -c 100000 valid", "exited without error, but its output does not decompress to its input"},
		{"another input's stream", "cat other", "exited without error, but its output does not decompress to its input (other bytes than were written)"},
		{"trailing garbage", "cat valid; printf junk", "exited without error, but its output does not decompress to its input"},
		{"endless garbage", "while :; do echo garbage; done", "its output does not decompress to its input"},
		{"failure", "echo 'xz: out of memory' >&2; exit 1", "exit status 1: xz: out of memory"},
		{"valid", "cat valid", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prog := filepath.Join(t.TempDir(), "xz")
			script := "#!/bin/sh\ncd " + dir + " || exit 1\ncat >/dev/null\n" + tc.script + "\n"
			if tc.name == "endless garbage" {
				// Never reads its input; shell builtins only, as the
				// check phase's PATH has no yes(1).
				script = "#!/bin/sh\n" + tc.script + "\n"
			}
			if err := os.WriteFile(prog, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			w, err := NewWriter(&out, XZ, Options{Threads: 1, chunkSize: 4 << 20, XZProgram: prog})
			if err != nil {
				t.Fatal(err)
			}
			w.Write(data)
			err = w.Close()
			if tc.want == "" {
				if err != nil || !bytes.Equal(out.Bytes(), files["valid"]) {
					t.Errorf("a working xz: error %v, %d bytes out, want its %d", err, out.Len(), len(files["valid"]))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), prog) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one naming %s and saying %q", err, prog, tc.want)
			}
			if out.Len() > 0 {
				t.Errorf("%d bytes written for a refused chunk", out.Len())
			}
		})
	}
}

func TestLevels(t *testing.T) {
	data := sample(1 << 20)
	for _, tc := range []struct {
		m      Method
		levels []int
	}{{Zstd, []int{1, 3, 19}}, {XZ, []int{0, 6}}, {Bzip2, []int{1, 9}}} {
		for _, l := range tc.levels {
			enc := encode(t, tc.m, Options{Level: Level(l)}, data)
			r, err := NewReader(bytes.NewReader(enc), tc.m)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, data) {
				t.Errorf("%s level %d: round trip failed: %v", tc.m, l, err)
			}
		}
	}
	for _, tc := range []struct {
		m     Method
		level int
		want  string
	}{
		{Zstd, 0, "compression zstd: level 0 out of range 1..22"},
		{Zstd, 23, "out of range 1..22"},
		{XZ, 10, "compression xz: level 10 out of range 0..9"},
		{Bzip2, 0, "out of range 1..9"},
		{None, 1, "compression none takes no level"},
	} {
		_, err := NewWriter(io.Discard, tc.m, Options{Level: Level(tc.level)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s level %d: error %v, want %q", tc.m, tc.level, err, tc.want)
		}
	}
}

// The zero Options work for every method, and xz -0 stays expressible:
// LevelZero is not the default.
func TestZeroOptions(t *testing.T) {
	data := sample(1 << 20)
	for _, m := range Methods {
		enc := encode(t, m, Options{}, data)
		r, err := NewReader(bytes.NewReader(enc), m)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s with zero Options: round trip failed: %v", m, err)
		}
	}
	if bytes.Equal(encode(t, XZ, Options{}, data), encode(t, XZ, Options{Level: LevelZero}, data)) {
		t.Error("xz: LevelZero compresses as the default level")
	}
}

func TestParse(t *testing.T) {
	for _, m := range Methods {
		if got, err := Parse(string(m)); err != nil || got != m {
			t.Errorf("Parse(%q) = %q, %v", m, got, err)
		}
	}
	_, err := Parse("gzip")
	if err == nil || err.Error() != `unsupported compression "gzip" (supported: none, xz, bzip2, zstd)` {
		t.Errorf("Parse(gzip): %v", err)
	}
}

// The chunk size is no option: tests and benchmarks set it through the
// environment, and a bad value is an error naming the variable.
func TestChunkSizeEnv(t *testing.T) {
	t.Setenv(chunkSizeEnv, "4096")
	e, err := NewEncoder(Zstd, Options{})
	if err != nil || e.ChunkSize() != 4096 {
		t.Fatalf("with %s=4096: chunk size %v, %v", chunkSizeEnv, e, err)
	}
	for _, bad := range []string{"12", "4k", "-4096"} {
		t.Setenv(chunkSizeEnv, bad)
		if _, err := NewEncoder(Zstd, Options{}); err == nil || !strings.Contains(err.Error(), chunkSizeEnv) {
			t.Errorf("%s=%s: %v, want an error naming the variable", chunkSizeEnv, bad, err)
		}
	}
}
