package compress

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"sync"
	"time"

	"github.com/dsnet/compress/bzip2"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// DefaultChunkSize is how much of a NAR one chunk holds. The encoders
// compress one stream on one core, and one large store path (a 270 MB Go
// toolchain) would otherwise serialise a run: NARs are cut at fixed offsets
// into chunks that are compressed independently and in parallel, each into
// a complete stream (a zstd frame, an xz or bzip2 stream), and the streams
// are concatenated. Every decoder Nix uses (libarchive's, and zstd, xz and
// bzip2 themselves) reads concatenated streams as one. Since the cut points
// depend only on the offset, the output does not depend on the number of
// threads. 8 MiB, klauspost's default zstd window, costs 0.4% of zstd
// output on the Go toolchain's NAR (16 MiB: 0.2%, but twice the memory:
// over 300 MB of RSS on BIG with Go's GC slack, before chunks in flight
// were bounded). zstd has its own, ZstdChunkSize; xz with a large
// dictionary loses more at chunk boundaries: XZProgramChunkSize.
const DefaultChunkSize = 8 << 20

// XZProgramChunkSize is the chunk size for an external xz, whose presets
// use dictionaries of 8 MiB and more and lose more at each cut (xz -T cuts
// at 3 dictionaries). Output on BIG against nix copy's single xz -6 stream:
// 16 MiB chunks 1.034x, 32 MiB 1.025x; peak RSS 217 and 228 MB (a chunk
// starts to fill only when a core is free to compress it).
const XZProgramChunkSize = 32 << 20

// chunkFunc compresses src into a complete stream appended to dst.
type chunkFunc func(dst, src []byte) ([]byte, error)

// chunkWriter buffers its input into chunks, compresses up to threads of
// them at once, and writes the results to w in order.
type chunkWriter struct {
	w       io.Writer
	e       *Encoder
	buf     []byte
	written bool                  // a chunk was submitted
	left    int64                 // the input still expected, from NewWriter's sizeHint
	queue   chan chan chunkResult // in order, for drain
	done    chan struct{}         // drain returned
	sem     chan struct{}         // chunks submitted and not yet written

	mu  sync.Mutex
	err error
}

type chunkResult struct {
	src, out []byte
	err      error
}

func newChunkWriter(w io.Writer, e *Encoder, hint int64) *chunkWriter {
	c := &chunkWriter{w: w, e: e, left: hint,
		queue: make(chan chan chunkResult, e.threads), done: make(chan struct{}), sem: make(chan struct{}, e.threads)}
	go c.drain()
	return c
}

// drain writes the compressed chunks in order.
func (c *chunkWriter) drain() {
	defer close(c.done)
	for ch := range c.queue {
		r := <-ch
		c.e.budget.put(r.src)
		if r.err == nil && c.getErr() == nil {
			if _, err := c.w.Write(r.out); err != nil {
				r.err = err
			}
		}
		c.e.budget.put(r.out)
		<-c.e.budget.slots
		<-c.sem
		if r.err != nil {
			c.setErr(r.err)
		}
	}
}

func (c *chunkWriter) getErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *chunkWriter) setErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if err := c.getErr(); err != nil {
			return 0, err
		}
		if c.buf == nil {
			// The whole chunk, or what the hint says is left of the NAR.
			n := c.e.size
			if c.left > 0 && c.left < int64(n) {
				n = int(c.left)
			}
			c.buf = c.e.budget.take(n)
		}
		k := min(len(p), c.e.size-len(c.buf))
		c.buf = append(c.buf, p[:k]...)
		p = p[k:]
		c.left -= int64(k)
		if len(c.buf) == c.e.size {
			c.submit()
		}
	}
	return n, nil
}

func (c *chunkWriter) submit() {
	src := c.buf
	c.buf = nil
	c.written = true
	ch := make(chan chunkResult, 1)
	// The chunk's slot of the budget, taken when it began to fill, is
	// freed once it is written.
	c.sem <- struct{}{}
	c.queue <- ch
	go func() {
		out, err := c.e.Append(nil, src)
		ch <- chunkResult{src: src, out: out, err: err}
	}()
}

// Close compresses what is left (an empty input still makes one stream),
// waits for every chunk to be written and returns the first error.
func (c *chunkWriter) Close() error {
	if c.buf != nil || !c.written {
		if c.buf == nil {
			c.buf = c.e.budget.take(0)
		}
		c.submit()
	}
	close(c.queue)
	<-c.done
	return c.getErr()
}

// ZstdChunkSize is the chunk (frame) size for zstd: Nix 2.35's, whose
// libzstd writes 16 MiB frames. The encoder's window is as large, so that a
// chunk is one window: on BIG, 8 MiB chunks and window wrote 1.0135x what
// Nix 2.35 writes, 16 MiB 1.0075x, with every literal section
// entropy-coded 1.0065x; on MANY (mostly NARs under 1 MiB) 1.0064x.
const ZstdChunkSize = 16 << 20

// zstdBetterBelow is the input size under which zstd streams are
// compressed at klauspost's "better" level rather than its default. On
// small inputs the default level writes 1-2% more than libzstd's level 3,
// which Nix uses (the NARs of /usr/share/doc's directories: under 64 KiB
// 1.9% more, 64-256 KiB 1.0%), and the smallest take little of a run's
// CPU: at the better level, those under 64 KiB compress 2% smaller for
// 0.02 s more CPU on MANY (those of 64-256 KiB would gain 1.7% for 0.02 s
// more, and were measured to cost more in a whole run). The choice
// depends on the size of the chunk alone, so the output is the same for
// any core count.
const zstdBetterBelow = 64 << 10

// zstdChunk compresses with klauspost's encoder at the level given (if set),
// or by default at its default level (libzstd's level 3 in speed), with every
// literal section entropy-coded (0.1% smaller, no slower), and chunks under
// zstdBetterBelow at its better level.
func zstdChunk(level int, set bool, concurrency int) (chunkFunc, error) {
	// No frame checksums, as Nix's own zstd NARs: FileHash and NarHash
	// cover the file and its content, and xxhash cost 4% of the CPU.
	// EncodeAll is safe for concurrent use: one encoder serves every chunk
	// of a run, since its tables are costly to set up (an encoder sets
	// them up on first use).
	opts := []zstd.EOption{zstd.WithEncoderCRC(false), zstd.WithEncoderConcurrency(concurrency)}
	if set {
		e, err := zstd.NewWriter(nil, append(opts, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)))...)
		if err != nil {
			return nil, err
		}
		return func(dst, src []byte) ([]byte, error) { return e.EncodeAll(src, dst), nil }, nil
	}
	e, err := zstd.NewWriter(nil, append(opts, zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithWindowSize(ZstdChunkSize), zstd.WithAllLitEntropyCompression(true))...)
	if err != nil {
		return nil, err
	}
	small, err := zstd.NewWriter(nil, append(opts, zstd.WithEncoderLevel(zstd.SpeedBetterCompression),
		zstd.WithWindowSize(zstdBetterBelow))...)
	if err != nil {
		return nil, err
	}
	return func(dst, src []byte) ([]byte, error) {
		if len(src) < zstdBetterBelow {
			return small.EncodeAll(src, dst), nil
		}
		return e.EncodeAll(src, dst), nil
	}, nil
}

// xzChunk compresses with the pure Go encoder, its dictionary no larger
// than the input needs, up to maxDict: the encoder sets up tables in
// proportion to it, which cost a small NAR three times its compression.
func xzChunk(maxDict int) chunkFunc {
	return func(dst, src []byte) ([]byte, error) {
		dict := xzDict(len(src), maxDict)
		return streamChunk(func(w io.Writer) (io.WriteCloser, error) { return xz.WriterConfig{DictCap: dict}.NewWriter(w) })(dst, src)
	}
}

// xzDict is the dictionary size for n bytes of input: the least power of
// two from 4 KiB up that holds them, but no more than maxDict. A larger
// one compresses no better.
func xzDict(n, maxDict int) int {
	dict := 4 << 10
	for dict < n && dict < maxDict {
		dict <<= 1
	}
	return min(dict, maxDict)
}

// streamChunk compresses each chunk as a whole stream of a streaming encoder.
func streamChunk(newWriter func(io.Writer) (io.WriteCloser, error)) chunkFunc {
	return func(dst, src []byte) ([]byte, error) {
		b := bytes.NewBuffer(dst)
		w, err := newWriter(b)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(src); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
}

// XZProgramMinSize is the least input an external xz compresses; smaller
// ones (most NARs of a system closure) are compressed in-process by the
// pure Go encoder. Starting xz costs about 12 ms, which is more than
// compressing them; on NARs of 1 MiB and less the pure Go encoder writes
// 0.2-0.7% more than xz -5 in less time (measured on the NARs of
// /usr/share/doc's directories). The choice depends on the input's size
// alone, so the output is still the same for any core count.
const XZProgramMinSize = 1 << 20

// xzProgramChunk runs an external xz (liblzma) on each chunk of at least
// XZProgramMinSize, single-threaded, so that its output, like ours, does
// not depend on the core count. The program is trusted for speed, not for
// its output: a broken xz that exits 0 with garbage or a truncated stream
// would be published under a narinfo whose NarHash it does not match. So
// the pure Go decoder reads the output as xz writes it, and it must give
// back the chunk byte for byte (the bytes NarHash was computed from). That
// costs about 8% more CPU time than xz's (an 86 MB NAR: 3.5 s on top of
// xz's 42 s), spent while xz runs.
func xzProgramChunk(program string, level int) chunkFunc {
	small := xzChunk(xzDictCap[1])
	return func(dst, src []byte) ([]byte, error) {
		if len(src) < XZProgramMinSize {
			return small(dst, src)
		}
		b := bytes.NewBuffer(dst)
		var stderr bytes.Buffer
		// A dictionary larger than the input compresses no better, but
		// costs the setup of the preset's full match finder.
		dict := xzDict(len(src), xzDictCap[level])
		cmd := exec.Command(program, fmt.Sprintf("--lzma2=preset=%d,dict=%d", level, dict), "-T1", "--check=crc64", "-c")
		cmd.Stdin = bytes.NewReader(src)
		cmd.Stderr = &stderr
		// A child of a wrapper script that outlives it must not hold Wait
		// forever by keeping stderr open.
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("%s: %w", program, err)
		}
		checkErr := decodesTo(io.TeeReader(out, b), src)
		// The check's decoder leaves its dictionary (8 MiB at preset 5)
		// behind, the only garbage of a run, and Go's heap would grow to
		// twice the live chunks before collecting it: BIG's peak RSS went
		// from 182 to 322-397 MB. A collection per chunk, which takes
		// milliseconds after seconds of xz, keeps the heap near the chunks.
		runtime.GC()
		if checkErr != nil {
			// The output is refused. Read on, to learn how the program
			// ends, but no more than the chunk: one that writes on and on
			// is stopped, with any child of a wrapper script that writes.
			if n, _ := io.CopyN(io.Discard, out, int64(len(src))); n == int64(len(src)) {
				cmd.Process.Kill()
				out.Close()
			}
		} else if _, err := io.Copy(b, out); err != nil {
			checkErr = err
		}
		err = cmd.Wait()
		var exit *exec.ExitError
		switch {
		case err != nil && (checkErr == nil || errors.As(err, &exit) && exit.Exited()):
			return nil, fmt.Errorf("%s: %w: %s", program, err, bytes.TrimSpace(stderr.Bytes()))
		case err == nil && checkErr != nil:
			return nil, fmt.Errorf("%s exited without error, but its output does not decompress to its input (%w): a broken xz program?", program, checkErr)
		case checkErr != nil:
			return nil, fmt.Errorf("%s: its output does not decompress to its input (%w)", program, checkErr)
		}
		return b.Bytes(), nil
	}
}

// decodesTo checks that r is xz data that decompresses to want exactly,
// reading no more than that from the decoder.
func decodesTo(r io.Reader, want []byte) error {
	d, err := NewReader(r, XZ)
	if err != nil {
		return err
	}
	s := &sameAs{rest: want}
	if _, err := io.Copy(s, d); err != nil {
		return err
	}
	if len(s.rest) > 0 {
		return fmt.Errorf("%d bytes short of the %d written", len(s.rest), len(want))
	}
	return nil
}

// sameAs is a writer that accepts only the bytes of rest, in order.
type sameAs struct{ rest []byte }

func (s *sameAs) Write(p []byte) (int, error) {
	if len(p) > len(s.rest) {
		return 0, errors.New("more bytes than were written")
	}
	if !bytes.Equal(p, s.rest[:len(p)]) {
		return 0, errors.New("other bytes than were written")
	}
	s.rest = s.rest[len(p):]
	return len(p), nil
}

func bzip2Chunk(level int) chunkFunc {
	return streamChunk(func(w io.Writer) (io.WriteCloser, error) {
		return bzip2.NewWriter(w, &bzip2.WriterConfig{Level: level})
	})
}
