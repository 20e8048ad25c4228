package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"

	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/mkbinarycache/mkbinarycache/builder/cachedir"
	"github.com/mkbinarycache/mkbinarycache/builder/compress"
	"github.com/mkbinarycache/mkbinarycache/builder/narinfo"
)

// dirBytes is the size of every regular file under dir.
func dirBytes(dir string) (uint64, error) {
	var total uint64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			total += uint64(fi.Size())
		}
		return nil
	})
	return total, err
}

// check verifies a cache, so that a broken fast path cannot win: one
// narinfo per path, each NarHash and NarSize as Nix recorded them, and one
// NAR (the largest on the first run, then others in turn) decompressed and
// hashed against its narinfo. It returns the size of the output.
func check(c *builtClosure, dir, method string, r int) (uint64, error) {
	total, err := dirBytes(dir)
	if err != nil {
		return 0, err
	}
	d, err := cachedir.Open(dir)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	infos, invalid, err := d.NarInfos()
	if err != nil {
		return 0, err
	}
	if err := errors.Join(invalid...); err != nil {
		return 0, err
	}
	if len(infos) != len(c.paths) {
		return 0, fmt.Errorf("%d narinfo files, want %d", len(infos), len(c.paths))
	}
	var nis []*narinfo.NarInfo
	for _, f := range infos {
		ni, err := readNarInfo(d, f)
		if err != nil {
			return 0, err
		}
		want, ok := c.paths[ni.StorePath]
		if !ok {
			return 0, fmt.Errorf("%s: %s is not in the closure", f, ni.StorePath)
		}
		wantHash, err := nixhash.ParseAny(want.NarHash, nil)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", want.Path, err)
		}
		if !slices.Equal(ni.NarHash.Digest(), wantHash.Digest()) || ni.NarSize != want.NarSize {
			return 0, fmt.Errorf("%s: NarHash %s NarSize %d, Nix recorded %s %d", f, ni.NarHash, ni.NarSize, want.NarHash, want.NarSize)
		}
		if ni.Compression != method && !(method == "none" && ni.Compression == "") {
			return 0, fmt.Errorf("%s: Compression %q, want %q", f, ni.Compression, method)
		}
		nis = append(nis, ni)
	}
	sort.Slice(nis, func(i, j int) bool { return nis[i].NarSize > nis[j].NarSize })
	if err := checkNAR(d, nis[r%len(nis)]); err != nil {
		return 0, err
	}
	return total, nil
}

func readNarInfo(d *cachedir.Dir, name string) (*narinfo.NarInfo, error) {
	data, err := d.ReadFileMax(name, narinfo.MaxSize)
	if err != nil {
		return nil, err
	}
	ni, _, err := narinfo.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.Name(name), err)
	}
	return ni, nil
}

// checkNAR decompresses the NAR of ni and compares its size and hash, and
// the file's, with the narinfo.
func checkNAR(d *cachedir.Dir, ni *narinfo.NarInfo) error {
	f, err := d.Open(ni.URL)
	if err != nil {
		return err
	}
	defer f.Close()
	fileHash := sha256.New()
	m := compress.Method(ni.Compression)
	if m == "" {
		m = compress.Bzip2
	}
	narHash := sha256.New()
	var n int64
	if xz, err := exec.LookPath("xz"); err == nil && m == compress.XZ {
		// liblzma decodes the large NARs of BIG in seconds, the pure Go
		// decoder in minutes.
		cmd := exec.Command(xz, "-dc")
		cmd.Stdin = io.TeeReader(f, fileHash)
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("%s: %w", xz, err)
		}
		n, err = io.Copy(narHash, out)
		if werr := cmd.Wait(); err == nil && werr != nil {
			err = werr
		}
		if err != nil {
			return fmt.Errorf("%s: xz -dc: %w", ni.URL, err)
		}
	} else {
		dec, err := compress.NewReader(io.TeeReader(f, fileHash), m)
		if err != nil {
			return fmt.Errorf("%s: %w", ni.URL, err)
		}
		if n, err = io.Copy(narHash, dec); err != nil {
			return fmt.Errorf("%s: decompress: %w", ni.URL, err)
		}
		dec.Close()
	}
	if _, err := io.Copy(fileHash, f); err != nil { // trailing bytes, if the decoder stopped early
		return fmt.Errorf("%s: %w", ni.URL, err)
	}
	if uint64(n) != ni.NarSize || !slices.Equal(narHash.Sum(nil), ni.NarHash.Digest()) {
		return fmt.Errorf("%s: the NAR (%d bytes) does not match NarHash/NarSize of %s", ni.URL, n, ni.StorePath)
	}
	if ni.FileHash != nil && !slices.Equal(fileHash.Sum(nil), ni.FileHash.Digest()) {
		return fmt.Errorf("%s: FileHash does not match the file", ni.URL)
	}
	return nil
}
