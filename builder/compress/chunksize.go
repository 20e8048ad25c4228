package compress

import (
	"fmt"
	"os"
	"strconv"
)

// chunkSizeEnv names an environment variable that sets the chunk size (in
// bytes) of every encoder that does not set its own, for the tests and
// benchmarks of this module (cachebench varies it). It is no tuning knob
// of the API: the output depends on the chunk size, and the defaults are
// chosen by measurement (docs/benchmarks.md).
const chunkSizeEnv = "MKBINARYCACHE_CHUNK_SIZE"

// chunkSizeOf returns the chunk size o asks for, else chunkSizeEnv's, else
// 0 for the method's default.
func chunkSizeOf(o Options) (int, error) {
	if o.chunkSize > 0 {
		return o.chunkSize, nil
	}
	v := os.Getenv(chunkSizeEnv)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1<<10 {
		return 0, fmt.Errorf("%s=%q: want a size in bytes of 1024 or more", chunkSizeEnv, v)
	}
	return n, nil
}
