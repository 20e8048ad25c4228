package pool

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
)

func TestEach(t *testing.T) {
	items := make([]int, 1000)
	for i := range items {
		items[i] = i
	}
	var sum, running, most atomic.Int64
	Each(context.Background(), 3, items, func(i int) {
		n := running.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		sum.Add(int64(i))
		running.Add(-1)
	})
	if sum.Load() != 999*1000/2 {
		t.Errorf("sum %d: not every item was handled once", sum.Load())
	}
	if most.Load() > 3 {
		t.Errorf("%d calls at once, want at most 3", most.Load())
	}
}

func TestEachStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	handled := 0
	Each(ctx, 1, make([]int, 100), func(int) {
		mu.Lock()
		handled++
		mu.Unlock()
		cancel()
	})
	if handled > 2 {
		t.Errorf("%d items handled after cancel, want at most 2", handled)
	}
}
