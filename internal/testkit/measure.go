package testkit

import (
	"os"
	"testing"
)

// MeasureEnv turns on the tests that only measure (minutes on 2 cores).
const MeasureEnv = "MKBINARYCACHE_MEASURE"

// Measure skips a test that only measures unless MeasureEnv is 1.
func Measure(t testing.TB) {
	t.Helper()
	if os.Getenv(MeasureEnv) != "1" {
		t.Skipf("a measurement (minutes on 2 cores): set %s=1", MeasureEnv)
	}
}
