package nardump

import "fmt"

// DepthProblem says why a NAR whose Info.MaxDepth is depth cannot be used
// by every Nix, or returns "" when it can.
func DepthProblem(depth int) string {
	if depth <= MaxNixDepth {
		return ""
	}
	return fmt.Sprintf("NAR nesting depth %d exceeds %d: Nix 2.34 and later refuse to unpack it", depth, MaxNixDepth)
}
