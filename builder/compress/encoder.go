package compress

import (
	"fmt"
	"io"
	"runtime"
	"sync"
)

// Encoder compresses the streams of one run: every NAR of a cache shares
// its encoder state (zstd's tables), its buffers and its memory budget, so
// that memory stays at a few chunks per core however many paths are written
// at once. It is safe for concurrent use.
type Encoder struct {
	chunk   chunkFunc
	size    int // chunk size
	threads int // chunks of one stream compressed at once
	outDiv  int // output buffers start at 1/outDiv of the input
	budget  *budget
}

// NewEncoder returns an encoder for m.
func NewEncoder(m Method, o Options) (*Encoder, error) {
	if err := m.CheckLevel(o.Level); err != nil {
		return nil, err
	}
	threads := max(o.Threads, 1)
	chunkSize, err := chunkSizeOf(o)
	if err != nil {
		return nil, err
	}
	level, levelSet := toolLevel(o.Level)
	e := &Encoder{size: chunkSize, threads: threads, outDiv: 1}
	if e.size <= 0 {
		e.size = DefaultChunkSize
	}
	switch m {
	case None:
		// Copied through chunks all the same: the file is then written
		// (and hashed) by another goroutine while the NAR is dumped.
		e.chunk = func(dst, src []byte) ([]byte, error) { return append(dst, src...), nil }
	case Zstd:
		if chunkSize <= 0 {
			e.size = ZstdChunkSize
		}
		if e.chunk, err = zstdChunk(level, levelSet, max(runtime.GOMAXPROCS(0), 2)); err != nil {
			return nil, err
		}
	case XZ:
		e.outDiv = 4 // xz output is well under a quarter of a NAR; it grows if not
		if o.XZProgram != "" {
			if !levelSet {
				level = XZProgramLevel
			}
			e.chunk = xzProgramChunk(o.XZProgram, level)
			if chunkSize <= 0 {
				e.size = XZProgramChunkSize
			}
			break
		}
		// ulikunitz/xz is much slower with large dictionaries for little
		// gain on NAR data: default to xz -1's 1 MiB.
		dict := xzDictCap[1]
		if levelSet {
			dict = xzDictCap[level]
		}
		e.chunk = xzChunk(dict)
	case Bzip2:
		if !levelSet {
			level = 9 // Nix's and bzip2(1)'s default
		}
		e.chunk = bzip2Chunk(level)
	default:
		return nil, fmt.Errorf("unsupported compression %q", m)
	}
	// Chunks being filled, compressed or written, across every stream of
	// the run. A filled chunk that waits for a core holds its memory for
	// nothing (with 32 MiB xz chunks, a third of the peak), so a chunk
	// starts to fill only when it can then be compressed; zstd and none
	// have one more, to fill while the others compress, since their
	// compression takes only a few times as long as the filling. xz and
	// bzip2 take hundreds of times as long.
	spare := 0
	if m == None || m == Zstd {
		spare = 1
	}
	e.budget = newBudget(max(threads, 2) + spare)
	return e, nil
}

// ChunkSize is the size of the independently compressed chunks: an input of
// at most this size is one stream, and Append gives the same bytes as a
// writer would.
func (e *Encoder) ChunkSize() int { return e.size }

// NewWriter returns a writer compressing one stream into w; sizeHint is the
// input's size if known, else 0. Close flushes it; it does not close w,
// and w is written from another goroutine until Close returns.
func (e *Encoder) NewWriter(w io.Writer, sizeHint int64) io.WriteCloser {
	return newChunkWriter(w, e, sizeHint)
}

// Append compresses src, of at most ChunkSize bytes, as one whole stream
// appended to dst, in the calling goroutine; a nil dst takes a buffer from
// the encoder's pool (Release it when done).
func (e *Encoder) Append(dst, src []byte) ([]byte, error) {
	if dst == nil {
		dst = e.budget.get(len(src) / e.outDiv)
	}
	return e.chunk(dst, src)
}

// Buffer returns an empty buffer of capacity at least n from the encoder's
// pool.
func (e *Encoder) Buffer(n int) []byte { return e.budget.get(n) }

// Release returns a buffer from Buffer or Append to the pool.
func (e *Encoder) Release(b []byte) { e.budget.put(b) }

// budget bounds the chunks in flight and pools their buffers by
// power-of-two capacity, from 64 KiB up: NARs come in every size, and a
// pool of mixed sizes would keep dropping the buffers it returns.
type budget struct {
	slots chan struct{}
	pools [40]sync.Pool // *[]byte of capacity 1<<i
}

const minBufShift = 16

func newBudget(chunks int) *budget { return &budget{slots: make(chan struct{}, chunks)} }

func bufClass(n int) int {
	c := minBufShift
	for 1<<c < n {
		c++
	}
	return c
}

// take waits for a slot of the budget, then gets a buffer for a chunk;
// the slot is given back when the chunk is written.
func (b *budget) take(n int) []byte {
	b.slots <- struct{}{}
	return b.get(n)
}

func (b *budget) get(n int) []byte {
	c := bufClass(n)
	if p, ok := b.pools[c].Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return make([]byte, 0, 1<<c)
}

func (b *budget) put(buf []byte) {
	if c := cap(buf); c >= 1<<minBufShift && c&(c-1) == 0 {
		b.pools[bufClass(c)].Put(&buf)
	}
}
