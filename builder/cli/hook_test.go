package cli

import "testing"

func TestCapLog(t *testing.T) {
	if got := string(capLog([]byte("short\n"), 6)); got != "short\n" {
		t.Errorf("a log within the cap changed: %q", got)
	}
	got := string(capLog([]byte("0123456789"), 4))
	if want := "0123\n[mkbinarycache: build log truncated to its first 4 of 10 bytes]\n"; got != want {
		t.Errorf("capped log %q, want %q", got, want)
	}
}
