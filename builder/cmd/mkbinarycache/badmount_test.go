package main_test

import (
	"crypto/rand"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
	"github.com/mkbinarycache/mkbinarycache/internal/testkit"
)

// Faults of the output file system, with the real binary in a private mount
// namespace (root): a full disk and a read-only one. The mount vanishes with
// the namespace, so the script checks the cache there: `verify` must accept
// whatever is left, and no temporary file may remain.

const mountScript = `set -u
mnt=$1 bin=$2; shift 2
case $MODE in
full) mount -t tmpfs -o size=1m tmpfs "$mnt" ;;
ro)   mkdir -p "$mnt/cache" && mount --bind "$mnt" "$mnt" && mount -o remount,bind,ro "$mnt" ;;
esac
"$bin" "$@"
echo "exit=$?"
if [ -e "$mnt/cache/nix-cache-info" ]; then
	"$bin" verify --quiet "$mnt/cache" && echo "verify=ok"
	echo "narinfos: $(ls "$mnt/cache" | grep -c narinfo)"
	echo "leftovers: $(find "$mnt/cache" -name '.tmp-*' | wc -l)"
fi
`

func runInMountNS(t *testing.T, mode, mnt string, args ...string) string {
	t.Helper()
	cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private",
		"sh", "-c", mountScript, "sh", mnt, binary(t)}, args...)...)
	cmd.Env = append(os.Environ(), "MODE="+mode)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("unshare: %v\n%s", err, out)
	}
	return string(out)
}

func TestBadOutputFS(t *testing.T) {
	nixtest.Require(t)
	s := newBadStore(t)
	// 3 MB of random bytes: too big for a 1 MB tmpfs, even compressed.
	data := make([]byte, 3<<20)
	rand.Read(data)
	big := s.Add(t, testkit.Path{Name: "big", Files: map[string]string{"blob": string(data)}})[0]
	attrsFile := writeTemp(t, "attrs.json", attrsJSON(entryOf(s.good), entryOf(big)))

	t.Run("disk full", func(t *testing.T) {
		mnt := t.TempDir()
		out := runInMountNS(t, "full", mnt, "--quiet", "--store-dir", s.Dir, "--attrs", attrsFile,
			"--out", mnt+"/cache", "--jobs", "1")
		t.Log(out)
		for _, w := range []string{"exit=1", big.StorePath, "no space left on device", "verify=ok", "leftovers: 0"} {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
	})
	t.Run("read-only", func(t *testing.T) {
		mnt := t.TempDir()
		out := runInMountNS(t, "ro", mnt, "--quiet", "--store-dir", s.Dir, "--attrs", attrsFile,
			"--out", mnt+"/cache")
		t.Log(out)
		for _, w := range []string{"exit=1", mnt + "/cache", "read-only file system"} {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
		if strings.Contains(out, "narinfos:") && !strings.Contains(out, "narinfos: 0") {
			t.Errorf("narinfos on a read-only file system:\n%s", out)
		}
	})
}
