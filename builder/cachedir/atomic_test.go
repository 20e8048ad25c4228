package cachedir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir)
	name := filepath.Join(dir, "f")
	for _, data := range []string{"first", "second"} {
		if err := d.WriteFile("f", []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		if err != nil || string(got) != data {
			t.Errorf("read %q, %v; want %q", got, err, data)
		}
	}
	if fi, _ := os.Stat(name); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("files left beside it: %v", entries)
	}
	// A directory in the way: the error names the file; no temp file stays.
	busy := filepath.Join(dir, "busy")
	if err := os.MkdirAll(filepath.Join(busy, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteFile("busy", []byte("x"), 0o644); err == nil || !strings.Contains(err.Error(), "write "+busy) {
		t.Errorf("error %v, want one naming %s", err, busy)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("files left: %v", entries)
	}
}

// A new file has no name in the directory until it is published, and an
// aborted one leaves none.
func TestCreateUnnamed(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir)
	f, err := d.Create("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("data"); err != nil {
		t.Fatal(err)
	}
	if f.tmp != "" {
		t.Skipf("%s has no O_TMPFILE: files are named %s*", dir, TmpPrefix)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("before Publish: %v in the directory, want nothing", entries)
	}
	if err := f.Publish("f", 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(got) != "data" {
		t.Errorf("read %q, %v; want %q", got, err, "data")
	}
	g, err := d.Create("")
	if err != nil {
		t.Fatal(err)
	}
	g.WriteString("aborted")
	g.Abort()
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("after Abort: %v in the directory, want f alone", entries)
	}
}

// Where an unnamed file cannot be linked (no /proc, no capability), its
// content is copied into place.
func TestCopyTo(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir)
	f, err := d.Create("")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	data := strings.Repeat("0123456789", 100000)
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Chmod(0o640); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "f")
	if err := os.WriteFile(name, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.copyTo("f"); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(name); err != nil || string(got) != data {
		t.Errorf("read %d bytes, %v; want %d", len(got), err, len(data))
	}
	if fi, _ := os.Stat(name); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("files left beside it: %v", entries)
	}
}
