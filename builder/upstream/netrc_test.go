package upstream

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNetrc(t *testing.T) {
	f := filepath.Join(t.TempDir(), "netrc")
	data := "machine a.example login alice password pa\n" +
		"macdef init\ncd /\nls\n\n" +
		"machine b.example\n\tlogin bob\n\taccount x\n\tpassword pb\n" +
		"default login anon password none\n"
	if err := os.WriteFile(f, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	entries, err := readNetrc(f)
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{netrc: entries}
	for host, want := range map[string]string{"a.example": "alice:pa", "b.example": "bob:pb", "c.example": "anon:none"} {
		if l, p, ok := c.credentials(host); !ok || l+":"+p != want {
			t.Errorf("%s: %q %q %v, want %s", host, l, p, ok, want)
		}
	}
	if e, err := readNetrc(f + "-missing"); err != nil || e != nil {
		t.Errorf("a missing netrc: %v %v, want none and no error", e, err)
	}
	for _, bad := range []string{"machine", "login x", "machine a bogus y"} {
		if err := os.WriteFile(f, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := readNetrc(f); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	// Errors never show the file's content (a password).
	if err := os.WriteFile(f, []byte("machine a password hunter2 bogus"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readNetrc(f); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %v", err)
	}
}
