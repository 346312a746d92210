package exporter

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// TestGzipWriter: what gzipWriter writes is one gzip member that the
// standard library reads back whole, CRC and length checked, at sizes
// around the block size and written in pieces of any size.
func TestGzipWriter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 1000, gzipBlockSize - 1, gzipBlockSize, gzipBlockSize + 1, 5*gzipBlockSize + 12345} {
		in := make([]byte, size)
		for i := range in { // compressible, as the text is, with some noise
			in[i] = "backlog_listener_accept_queue{address=\"127.0.0.1\"} 0\n"[i%52]
			if rng.IntN(50) == 0 {
				in[i] = byte(rng.IntN(256))
			}
		}
		var out bytes.Buffer
		z := newGzipWriter(&out)
		for rest := in; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(300<<10))
			if w, err := z.Write(rest[:n]); w != n || err != nil {
				t.Fatalf("size %d: Write %d of %d, %v", size, w, n, err)
			}
			rest = rest[n:]
		}
		if err := z.Close(); err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(&out)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		zr.Multistream(false)
		got, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !bytes.Equal(got, in) {
			t.Fatalf("size %d: read back %d bytes that differ", size, len(got))
		}
		if out.Len() != 0 {
			t.Errorf("size %d: %d bytes after the gzip member", size, out.Len())
		}
	}
}

// failAfter fails every write after n bytes.
type failAfter struct{ n int }

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n < len(p) {
		return 0, errors.New("gone")
	}
	f.n -= len(p)
	return len(p), nil
}

// TestGzipWriterError: a client gone mid-scrape ends the writing with its
// error, and Close waits for the blocks under way.
func TestGzipWriterError(t *testing.T) {
	for _, after := range []int{0, 5, 200} {
		z := newGzipWriter(&failAfter{after})
		in := bytes.Repeat([]byte(fmt.Sprint("x y z ", after)), 3*gzipBlockSize/7)
		_, werr := z.Write(in)
		if err := z.Close(); err == nil {
			t.Errorf("failing after %d bytes: Close returned no error (Write: %v)", after, werr)
		}
		if len(z.queue) != 0 {
			t.Errorf("failing after %d bytes: %d blocks left", after, len(z.queue))
		}
	}
}
