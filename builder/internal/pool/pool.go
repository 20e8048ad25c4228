// Package pool runs a function over items on a bounded number of
// goroutines, the shape every cache-wide pass (write, sign, verify) has.
package pool

import (
	"context"
	"runtime"
	"sync"
)

// Jobs is n, or the number of CPUs when n <= 0.
func Jobs(n int) int {
	if n > 0 {
		return n
	}
	return runtime.NumCPU()
}

// Each calls fn for every item, on at most Jobs(jobs) goroutines, in the
// order of items. It stops handing out items once ctx is done and returns
// when every call has returned. fn synchronises what it shares.
func Each[T any](ctx context.Context, jobs int, items []T, fn func(T)) {
	var wg sync.WaitGroup
	work := make(chan T)
	for range min(Jobs(jobs), max(len(items), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				fn(it)
			}
		}()
	}
feed:
	for _, it := range items {
		select {
		case work <- it:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
}
