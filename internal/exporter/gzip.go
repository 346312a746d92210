package exporter

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/flate"
)

// gzipWriter writes one gzip member whose deflate data is compressed in
// blocks on several CPUs, as pigz does: each block a deflate stream of its
// own, ended by a sync flush (an empty stored block, which leaves the
// stream byte-aligned and open), the last one by the final block; CRC-32
// and length cover the whole. Any gzip reader reads it as one stream. A
// block starts without the previous one's window, which at 1 MiB costs
// less than 1 % in size. At 10,000 listeners the text is ~10 MB: on two
// CPUs compression takes half the time, and overlaps writing the text.
type gzipWriter struct {
	w       io.Writer
	block   []byte // filling
	crc     uint32
	size    uint32 // modulo 2^32, as gzip keeps it
	started bool
	queue   []*gzipBlock // compressing, in order
	err     error
}

type gzipBlock struct {
	in, out []byte
	done    chan struct{}
}

const gzipBlockSize = 1 << 20

var (
	// Blocks grow as they fill, so that a small text (a few hundred
	// listeners) holds no more than its size while it is written.
	gzipBlocks = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}
	// Compressors of one level (gzipLevel): the pool is the writers'.
	deflaters = sync.Pool{New: func() any {
		w, _ := flate.NewWriter(nil, gzipLevel)
		return w
	}}
)

// gzipLevel is gzip's fastest: on 10,000 listeners' text (~10 MB) it
// takes a quarter of the time of compress/gzip's default level, for
// ~0.39 MB against 0.35 MB (docs/performance.md).
const gzipLevel = flate.BestSpeed

func newGzipWriter(w io.Writer) *gzipWriter {
	return &gzipWriter{w: w}
}

func (z *gzipWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if z.err != nil {
			return 0, z.err
		}
		if z.block == nil {
			z.block = (*gzipBlocks.Get().(*[]byte))[:0]
		}
		c := min(len(p), gzipBlockSize-len(z.block))
		z.block, p = append(z.block, p[:c]...), p[c:]
		if len(z.block) == gzipBlockSize {
			z.send(false)
		}
	}
	return n, z.err
}

// send starts compressing the block filled so far, writes out the blocks
// already compressed, in order, and waits for the oldest while as many as
// there are CPUs are under way.
func (z *gzipWriter) send(last bool) {
	b := &gzipBlock{in: z.block, done: make(chan struct{})}
	z.block = nil
	z.crc = crc32.Update(z.crc, crc32.IEEETable, b.in)
	z.size += uint32(len(b.in))
	z.queue = append(z.queue, b)
	if last && len(z.queue) == 1 {
		b.compress(true) // all of it in one block: no goroutine
	} else {
		go b.compress(last)
	}
	z.drain(last)
}

// drain writes out the blocks compressed, in order; all of them if last,
// else waiting for the oldest only while more than there are CPUs are
// under way.
func (z *gzipWriter) drain(last bool) {
	for len(z.queue) > 0 {
		head := z.queue[0]
		if len(z.queue) <= runtime.GOMAXPROCS(0) && !last {
			select {
			case <-head.done:
			default:
				return
			}
		}
		<-head.done
		z.queue = z.queue[1:]
		z.writeOut(head)
	}
}

func (b *gzipBlock) compress(last bool) {
	defer close(b.done)
	var out bytes.Buffer
	out.Grow(len(b.in)/8 + 64)
	d := deflaters.Get().(*flate.Writer)
	d.Reset(&out)
	d.Write(b.in) // to a bytes.Buffer: no error
	if last {
		d.Close()
	} else {
		d.Flush()
	}
	deflaters.Put(d)
	if in := b.in[:0]; cap(in) <= 2*gzipBlockSize {
		gzipBlocks.Put(&in)
	}
	b.in, b.out = nil, out.Bytes()
}

func (z *gzipWriter) writeOut(b *gzipBlock) {
	if z.err != nil {
		return
	}
	if !z.started {
		z.started = true
		// RFC 1952: ID1 ID2, CM deflate, no flags, no mtime, XFL 4
		// (fastest), OS unknown.
		if _, z.err = z.w.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255}); z.err != nil {
			return
		}
	}
	_, z.err = z.w.Write(b.out)
}

// writeDeflated writes a deflate stream compressed before (deflateSegment):
// n bytes whose CRC-32 is crc. What was written before it goes first, in
// a block of its own.
func (z *gzipWriter) writeDeflated(out []byte, crc uint32, n int) {
	if z.err != nil || n == 0 {
		return
	}
	if len(z.block) > 0 {
		z.send(false)
	}
	b := &gzipBlock{out: out, done: make(chan struct{})}
	close(b.done)
	z.crc = crc32Combine(z.crc, crc, n)
	z.size += uint32(n)
	z.queue = append(z.queue, b)
	z.drain(false)
}

// deflateSegment compresses text as a deflate stream that writeDeflated
// can put anywhere in a gzipWriter's: ended by a sync flush, not final.
func deflateSegment(text []byte) (out []byte, crc uint32) {
	var buf bytes.Buffer
	buf.Grow(len(text)/8 + 64)
	d := deflaters.Get().(*flate.Writer)
	d.Reset(&buf)
	d.Write(text) // to a bytes.Buffer: no error
	d.Flush()
	deflaters.Put(d)
	return buf.Bytes(), crc32.ChecksumIEEE(text)
}

// crc32Combine is the CRC-32 of A followed by B from theirs and B's
// length, as zlib's crc32_combine(): appending len2 zero bytes to A is a
// linear map over GF(2), applied by squaring its matrix.
func crc32Combine(crc1, crc2 uint32, len2 int) uint32 {
	if len2 <= 0 {
		return crc1
	}
	var even, odd [32]uint32
	odd[0] = crc32.IEEE // one zero bit
	for n, row := 1, uint32(1); n < 32; n, row = n+1, row<<1 {
		odd[n] = row
	}
	gf2Square(&even, &odd) // two zero bits
	gf2Square(&odd, &even) // four
	for {
		gf2Square(&even, &odd) // one zero byte, then more at each turn
		if len2&1 != 0 {
			crc1 = gf2Times(&even, crc1)
		}
		if len2 >>= 1; len2 == 0 {
			break
		}
		gf2Square(&odd, &even)
		if len2&1 != 0 {
			crc1 = gf2Times(&odd, crc1)
		}
		if len2 >>= 1; len2 == 0 {
			break
		}
	}
	return crc1 ^ crc2
}

func gf2Times(mat *[32]uint32, vec uint32) uint32 {
	var sum uint32
	for i := 0; vec != 0; i, vec = i+1, vec>>1 {
		if vec&1 != 0 {
			sum ^= mat[i]
		}
	}
	return sum
}

func gf2Square(square, mat *[32]uint32) {
	for n := range mat {
		square[n] = gf2Times(mat, mat[n])
	}
}

// Close compresses what is left, writes every block and the trailer.
func (z *gzipWriter) Close() error {
	if z.err == nil && z.block == nil {
		z.block = (*gzipBlocks.Get().(*[]byte))[:0] // an empty last block
	}
	if z.block != nil {
		z.send(true)
	}
	for _, b := range z.queue { // after an error: let them finish
		<-b.done
	}
	z.queue = nil
	if z.err != nil {
		return z.err
	}
	var trailer [8]byte
	binary.LittleEndian.PutUint32(trailer[:4], z.crc)
	binary.LittleEndian.PutUint32(trailer[4:], z.size)
	_, z.err = z.w.Write(trailer[:])
	return z.err
}
