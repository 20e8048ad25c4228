package verify

import (
	"crypto/sha256"
	"strconv"
)

func sha256sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func itoa(n int) string { return strconv.Itoa(n) }
