package exporter

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"hash/crc32"
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

// TestCRC32Combine: the combined CRC is the CRC of the two parts joined.
func TestCRC32Combine(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range [][2]int{{0, 0}, {0, 5}, {5, 0}, {1, 1}, {100, 3}, {3, 100000}, {gzipBlockSize, 12345}} {
		a, b := make([]byte, n[0]), make([]byte, n[1])
		for i := range a {
			a[i] = byte(rng.IntN(256))
		}
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		if got, want := crc32Combine(crc32.ChecksumIEEE(a), crc32.ChecksumIEEE(b), len(b)), crc32.ChecksumIEEE(append(a, b...)); got != want {
			t.Errorf("lengths %v: %08x, want %08x", n, got, want)
		}
	}
}

// TestGzipWriterDeflated: segments compressed before, written between
// text, read back as one stream.
func TestGzipWriterDeflated(t *testing.T) {
	var want []byte
	var out bytes.Buffer
	z := newGzipWriter(&out)
	for i := range 40 {
		text := bytes.Repeat([]byte(fmt.Sprintf("segment %d\n", i)), i*(gzipBlockSize/200))
		if i%3 == 0 {
			z.Write(text)
		} else {
			seg, crc := deflateSegment(text)
			z.writeDeflated(seg, crc, len(text))
		}
		want = append(want, text...)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes, want %d", len(got), len(want))
	}
}
