// Package order sorts store paths so that each comes after its references:
// the order in which narinfos are published (and, reversed, removed) so
// that a cache is closed under references at every moment.
package order

import (
	"fmt"
	"sort"
)

// Layers returns the nodes in layers: each node's references among nodes
// are all in earlier layers. References to nodes outside the set and to the
// node itself are ignored. Each layer is sorted; a cycle is an error.
func Layers(nodes []string, refs func(node string) []string) ([][]string, error) {
	in := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		in[n] = true
	}
	waiting := make(map[string]int, len(nodes)) // references not yet placed
	referrers := map[string][]string{}
	var next []string
	for n := range in {
		for _, r := range refs(n) {
			if r != n && in[r] {
				waiting[n]++
				referrers[r] = append(referrers[r], n)
			}
		}
		if waiting[n] == 0 {
			next = append(next, n)
		}
	}
	var layers [][]string
	placed := 0
	for len(next) > 0 {
		sort.Strings(next)
		layers = append(layers, next)
		placed += len(next)
		var after []string
		for _, n := range next {
			for _, m := range referrers[n] {
				if waiting[m]--; waiting[m] == 0 {
					after = append(after, m)
				}
			}
		}
		next = after
	}
	if placed != len(in) {
		for n := range in {
			if waiting[n] > 0 {
				return nil, fmt.Errorf("%s: a reference cycle", n)
			}
		}
	}
	return layers, nil
}
