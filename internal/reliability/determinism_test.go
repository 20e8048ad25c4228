package reliability

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/mkbinarycache/mkbinarycache/internal/nixtest"
)

// TestDeterministic: the binary writes the same cache, byte for byte (every
// file, name, mode and symlink), for --jobs 1, 2 and 8 (with as many
// encoder threads) and across runs, for every compression method, on the
// fixture plus paths larger than one compressor block.
func TestDeterministic(t *testing.T) {
	nixtest.Require(t)
	fx := nixtest.BuildFixture(t)
	bin := binary(t)
	paths := append([]string{fx.Hello, blobPath(t, "blob-3m", 3<<20)}, smallPaths(t, 40)...)
	for _, m := range []string{"zstd", "xz", "bzip2", "none"} {
		t.Run(m, func(t *testing.T) {
			var first map[string]string
			var firstName string
			for _, jobs := range []int{1, 2, 8, 1, 8} {
				for _, extra := range [][]string{nil, {"--nar-listing"}} {
					if extra != nil && jobs != 8 {
						continue
					}
					name := fmt.Sprintf("--jobs %d %v", jobs, extra)
					dir := filepath.Join(t.TempDir(), "cache")
					args := append([]string{"--quiet", "--compression", m, "--jobs", fmt.Sprint(jobs),
						"--threads", fmt.Sprint(jobs), "--out", dir}, extra...)
					run(t, bin, append(args, paths...)...)
					sums := treeSums(t, dir)
					if extra != nil {
						// The listings are extra files; the rest must not change.
						for k := range sums {
							if filepath.Ext(k) == ".ls" {
								delete(sums, k)
							}
						}
					}
					if first == nil {
						first, firstName = sums, name
						continue
					}
					if d := diffSums(first, sums); d != "" {
						t.Errorf("%s and %s differ:\n%s", firstName, name, d)
					}
				}
			}
		})
	}
}
