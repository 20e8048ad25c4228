package nardump

import (
	"io"
	"os"
	"testing"
)

// BenchmarkDump dumps $NARDUMP_BENCH_PATH (e.g. a large store path).
func BenchmarkDump(b *testing.B) {
	p := os.Getenv("NARDUMP_BENCH_PATH")
	if p == "" {
		b.Skip("set NARDUMP_BENCH_PATH")
	}
	for b.Loop() {
		if err := Dump(io.Discard, p); err != nil {
			b.Fatal(err)
		}
	}
}
