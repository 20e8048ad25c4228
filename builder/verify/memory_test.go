package verify_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/builder/listing"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
	"github.com/mkbinarycache/mkbinarycache/builder/verify"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// allocated returns the bytes allocated while f runs (TotalAlloc counts
// every allocation, freed or not, so the bound holds whatever the GC does).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// deepNAR is a NAR of depth directories nested in one another, each named
// by 255 bytes (the longest name go-nix reads), the innermost empty: about
// 400 bytes a level.
func deepNAR(depth int) []byte {
	var b bytes.Buffer
	str := func(s string) {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		b.Write(n[:])
		b.WriteString(s)
		b.Write(make([]byte, (8-len(s)%8)%8))
	}
	name := strings.Repeat("n", 255)
	str("nix-archive-1")
	for i := 0; i < depth; i++ {
		for _, s := range []string{"(", "type", "directory", "entry", "(", "name", name, "node"} {
			str(s)
		}
	}
	str("(")
	str("type")
	str("directory")
	str(")")
	for i := 0; i < depth; i++ {
		str(")")
		str(")")
	}
	return b.Bytes()
}

// TestBoundedMemory checks that verify's memory does not grow with what a
// hostile cache makes it read: a NAR nested 4096 deep, of 1.6 MiB (without
// the cap, go-nix's parser allocates its paths, over 4 GiB; 20 MiB with
// it), a narinfo of 64 MiB and a listing of 256 MiB (2 MiB each).
func TestBoundedMemory(t *testing.T) {
	const bound = 64 << 20

	t.Run("deep NAR", func(t *testing.T) {
		dir, _ := fakeCache(t, compress.None)
		url := field(readNarInfo(t, dir, libHash), "URL")
		nar := deepNAR(4096)
		testkit.Must(t, os.WriteFile(filepath.Join(dir, filepath.FromSlash(url)), nar, 0o644))
		// The narinfo claims its size: verify reads no further than that.
		edit(t, dir, libHash, func(s string) string {
			s = strings.Replace(s, "FileSize: "+field(s, "FileSize"), "FileSize: "+strconv.Itoa(len(nar)), 1)
			return strings.Replace(s, "NarSize: "+field(s, "NarSize"), "NarSize: "+strconv.Itoa(len(nar)), 1)
		})
		var got []string
		n := allocated(func() { got = testkit.Problems(t, verify.Options{Dir: dir, Jobs: 1}) })
		t.Logf("verify allocated %d KiB for a NAR of %d KiB", n>>10, len(nar)>>10)
		if n > bound {
			t.Errorf("verify allocated %d MiB for a NAR of %d KiB", n>>20, len(nar)>>10)
		}
		want := libHash + ".narinfo: NAR " + url + ": not a well-formed NAR: read NAR: nested deeper than 256"
		if !matchAll([]string{want, "*NarHash is*", "*FileHash is*"}, got) {
			t.Errorf("problems:\n%s\nwant one: %s", strings.Join(got, "\n"), want)
		}
	})

	t.Run("decompression bomb", func(t *testing.T) {
		// A few KiB of zstd that inflate to 256 MiB: read no further than a
		// byte past NarSize, and reported as that, not as what the cut
		// left of it.
		dir, _ := fakeCache(t, compress.Zstd)
		ni := readNarInfo(t, dir, libHash)
		url := field(ni, "URL")
		var bomb bytes.Buffer
		w, err := compress.NewWriter(&bomb, compress.Zstd, compress.Options{})
		testkit.Must(t, err)
		zeros := make([]byte, 1<<20)
		for range 256 {
			w.Write(zeros)
		}
		testkit.Must(t, w.Close())
		testkit.Must(t, os.WriteFile(filepath.Join(dir, filepath.FromSlash(url)), bomb.Bytes(), 0o644))
		got := testkit.Problems(t, verify.Options{Dir: dir, Jobs: 1})
		want := []string{libHash + ".narinfo: NAR " + url + ": NarSize is " + field(ni, "NarSize") + ", the NAR has more bytes", "*FileSize is*"}
		if !matchAll(want, got) {
			t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})

	t.Run("huge narinfo", func(t *testing.T) {
		dir, _ := fakeCache(t, compress.None)
		f, err := os.OpenFile(narInfoFile(dir, libHash), os.O_WRONLY|os.O_APPEND, 0)
		testkit.Must(t, err)
		testkit.Must(t, f.Truncate(64<<20)) // sparse: no disk used
		testkit.Must(t, f.Close())
		var got []string
		n := allocated(func() { got = testkit.Problems(t, verify.Options{Dir: dir, Jobs: 1}) })
		t.Logf("verify allocated %d KiB for a narinfo of 64 MiB", n>>10)
		if n > bound {
			t.Errorf("verify allocated %d MiB for a narinfo of 64 MiB", n>>20)
		}
		want := libHash + ".narinfo: read narinfo: larger than " + strconv.Itoa(narinfo.MaxSize) + " bytes"
		if !matchAll([]string{want}, got) {
			t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
		}
	})
	t.Run("huge listing", func(t *testing.T) {
		dir, _ := fakeCache(t, compress.None)
		f, err := os.Create(filepath.Join(dir, libHash+".ls"))
		testkit.Must(t, err)
		testkit.Must(t, f.Truncate(256<<20))
		testkit.Must(t, f.Close())
		var got []string
		n := allocated(func() { got = testkit.Problems(t, verify.Options{Dir: dir, Jobs: 1}) })
		t.Logf("verify allocated %d KiB for a listing of 256 MiB", n>>10)
		if n > bound {
			t.Errorf("verify allocated %d MiB for a listing of 256 MiB", n>>20)
		}
		if want := libHash + ".narinfo: listing " + libHash + ".ls is larger than * bytes, far more than its NAR's listing"; !matchAll([]string{want}, got) {
			t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
		}
	})
}

// TestReadDepthCap checks listing.Read's cap itself: the deepest NAR it
// takes, and the first it refuses.
func TestReadDepthCap(t *testing.T) {
	// deepNAR(d) has d+1 nodes on its chain.
	if _, err := listing.Read(bytes.NewReader(deepNAR(listing.MaxDepth - 1))); err != nil {
		t.Errorf("depth %d: %v", listing.MaxDepth, err)
	}
	if _, err := listing.Read(bytes.NewReader(deepNAR(listing.MaxDepth))); err == nil {
		t.Errorf("depth %d accepted", listing.MaxDepth+1)
	}
}
