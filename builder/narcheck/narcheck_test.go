package narcheck_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/builder/narcheck"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
)

func sum(b []byte) *nixhash.HashWithEncoding {
	s := sha256.Sum256(b)
	return nixhash.MustNewHashWithEncoding(nixhash.SHA256, s[:], nixhash.NixBase32, true)
}

func zstd(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := compress.NewWriter(&out, compress.Zstd, compress.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestCheck(t *testing.T) {
	nar := bytes.Repeat([]byte("nix archive "), 1000)
	file := zstd(t, nar)
	good := narinfo.NarInfo{Compression: "zstd", FileHash: sum(file), FileSize: uint64(len(file)), NarHash: sum(nar), NarSize: uint64(len(nar))}
	other := []byte("another path's NAR")
	for _, tc := range []struct {
		name string
		edit func(*narinfo.NarInfo)
		file []byte
		want string
	}{
		{"good", func(*narinfo.NarInfo) {}, file, ""},
		{"no FileHash or FileSize", func(ni *narinfo.NarInfo) { ni.FileHash, ni.FileSize = nil, 0 }, file, ""},
		{"NarHash", func(ni *narinfo.NarInfo) { ni.NarHash = sum(other) }, file, "NarHash is " + sum(other).String() + ", the NAR hashes to " + sum(nar).String()},
		{"NarSize short", func(ni *narinfo.NarInfo) { ni.NarSize-- }, file, "the NAR has more bytes"},
		{"NarSize long", func(ni *narinfo.NarInfo) { ni.NarSize++ }, file, "the NAR has 12000 bytes"},
		{"FileHash", func(ni *narinfo.NarInfo) { ni.FileHash = sum(other) }, file, "FileHash is"},
		{"FileSize", func(ni *narinfo.NarInfo) { ni.FileSize-- }, file, "the file has more bytes"},
		{"not zstd", func(*narinfo.NarInfo) {}, other, "does not decompress as zstd"},
		{"no NarHash", func(ni *narinfo.NarInfo) { ni.NarHash = nil }, file, "no NarHash or NarSize"},
		{"unknown compression", func(ni *narinfo.NarInfo) { ni.Compression = "lz4" }, file, `unsupported compression "lz4"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ni := good
			tc.edit(&ni)
			err := narcheck.Check(context.Background(), bytes.NewReader(tc.file), &ni)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Check = %v, want %q", err, tc.want)
			}
		})
	}
}

// A small file claiming a small NAR that decompresses to a huge one (a
// decompression bomb) is read no further than the sizes claimed.
func TestCheckBounded(t *testing.T) {
	bomb := zstd(t, make([]byte, 256<<20))
	ni := narinfo.NarInfo{Compression: "zstd", NarHash: sum(nil), NarSize: 1000, FileSize: uint64(len(bomb)) + 1<<30}
	r := &countingReader{r: bytes.NewReader(bomb)}
	err := narcheck.Check(context.Background(), r, &ni)
	if err == nil || !strings.Contains(err.Error(), "NarSize is 1000, the NAR has more bytes") {
		t.Errorf("Check = %v", err)
	}
	// A file whose FileSize is small is hashed no further either.
	big := &countingReader{r: io.MultiReader(bytes.NewReader(zstd(t, []byte("x"))), bytes.NewReader(make([]byte, 64<<20)))}
	ni = narinfo.NarInfo{Compression: "zstd", NarHash: sum([]byte("x")), NarSize: 1, FileSize: 10}
	if err := narcheck.Check(context.Background(), big, &ni); err == nil || big.n > 1<<20 {
		t.Errorf("Check = %v after reading %d bytes of a file that claims 10", err, big.n)
	}
}

// Read gives the parser the NAR as decompressed; what it refuses is a
// malformed NAR, unless the NAR is longer than NarSize (the parser saw it
// cut) or does not decompress.
func TestReadParse(t *testing.T) {
	nar := bytes.Repeat([]byte("nix archive "), 1000)
	file := zstd(t, nar)
	good := narinfo.NarInfo{Compression: "zstd", FileHash: sum(file), FileSize: uint64(len(file)), NarHash: sum(nar), NarSize: uint64(len(nar))}
	refuse := func(r io.Reader) error {
		seen, err := io.ReadAll(io.LimitReader(r, 100))
		if err != nil || !bytes.Equal(seen, nar[:100]) {
			t.Errorf("parser saw %q, %v", seen, err)
		}
		return errors.New("bad token")
	}
	for _, tc := range []struct {
		name string
		edit func(*narinfo.NarInfo)
		file []byte
		want string
	}{
		{"malformed", func(*narinfo.NarInfo) {}, file, "not a well-formed NAR: bad token"},
		{"cut", func(ni *narinfo.NarInfo) { ni.NarSize-- }, file, "NarSize is 11999, the NAR has more bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ni := good
			tc.edit(&ni)
			sizes, err := narcheck.Read(context.Background(), bytes.NewReader(tc.file), &ni, refuse)
			if err == nil || err.Error() != tc.want {
				t.Errorf("Read = %v, want %q", err, tc.want)
			}
			if sizes.File != uint64(len(file)) || sizes.Nar != ni.NarSize+1 && sizes.Nar != ni.NarSize {
				t.Errorf("Read sizes %+v", sizes)
			}
		})
	}
}
