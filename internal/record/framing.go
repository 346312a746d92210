package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// A record on disk (all integers little-endian, so a recording reads the
// same on any machine):
//
//	0  4  magic "BLGR"
//	4  1  framing version (1)
//	5  1  kind: 1 header, 2 key frame, 3 delta frame
//	6  1  flags: bit 0 = payload is deflate-compressed
//	7  1  reserved, 0
//	8  4  payload length
//	12 4  CRC-32C of bytes 4..12 and the payload
//	16 .. payload (JSON, see docs/record.md)
const (
	recordHeaderLen = 16
	framingVersion  = 1
	// MaxPayload bounds one record: a key frame of 100,000 listeners is
	// about 4 MiB compressed. A longer length is corruption.
	MaxPayload = 64 << 20
)

var magic = [4]byte{'B', 'L', 'G', 'R'}

// Record kinds.
const (
	kindHeader = 1
	kindKey    = 2
	kindDelta  = 3
)

const flagDeflate = 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// rawRecord is one record as framed.
type rawRecord struct {
	kind, flags uint8
	payload     []byte // aliases the input
}

// appendRecord frames payload onto b.
func appendRecord(b []byte, kind, flags uint8, payload []byte) []byte {
	var h [recordHeaderLen]byte
	copy(h[:4], magic[:])
	h[4], h[5], h[6] = framingVersion, kind, flags
	binary.LittleEndian.PutUint32(h[8:12], uint32(len(payload)))
	crc := crc32.Update(0, castagnoli, h[4:12])
	crc = crc32.Update(crc, castagnoli, payload)
	binary.LittleEndian.PutUint32(h[12:16], crc)
	b = append(b, h[:]...)
	return append(b, payload...)
}

// Framing errors.
var (
	errShort = errors.New("record cut short")
	errBad   = errors.New("record damaged")
)

// parseRecord decodes the record at the start of b and returns it with its
// length. errShort means b ends inside a record that could be whole with
// more bytes (a torn tail when b is the whole file); errBad means the
// bytes are not a valid record.
func parseRecord(b []byte) (rawRecord, int, error) {
	if len(b) < recordHeaderLen {
		if !bytes.HasPrefix(magic[:], b[:min(len(b), 4)]) {
			return rawRecord{}, 0, fmt.Errorf("%w: no record magic", errBad)
		}
		return rawRecord{}, 0, errShort
	}
	if !bytes.Equal(b[:4], magic[:]) {
		return rawRecord{}, 0, fmt.Errorf("%w: no record magic", errBad)
	}
	if b[4] != framingVersion {
		return rawRecord{}, 0, fmt.Errorf("%w: framing version %d, this backlog reads %d", errBad, b[4], framingVersion)
	}
	if b[7] != 0 || b[6]&^flagDeflate != 0 {
		return rawRecord{}, 0, fmt.Errorf("%w: unknown flags", errBad)
	}
	n := binary.LittleEndian.Uint32(b[8:12])
	if n > MaxPayload {
		return rawRecord{}, 0, fmt.Errorf("%w: length %d over the %d limit", errBad, n, MaxPayload)
	}
	end := recordHeaderLen + int(n)
	if len(b) < end {
		return rawRecord{}, 0, errShort
	}
	crc := crc32.Update(0, castagnoli, b[4:12])
	crc = crc32.Update(crc, castagnoli, b[recordHeaderLen:end])
	if crc != binary.LittleEndian.Uint32(b[12:16]) {
		return rawRecord{}, 0, fmt.Errorf("%w: checksum mismatch", errBad)
	}
	return rawRecord{kind: b[5], flags: b[6], payload: b[recordHeaderLen:end]}, end, nil
}

// nextValid returns the offset of the first whole, valid record at or
// after from, or -1.
func nextValid(b []byte, from int) int {
	for from < len(b) {
		i := bytes.Index(b[from:], magic[:])
		if i < 0 {
			return -1
		}
		if _, _, err := parseRecord(b[from+i:]); err == nil {
			return from + i
		}
		from += i + 1
	}
	return -1
}

// ValidPrefix returns the length of the longest prefix of b that does not
// end inside a torn record: damaged records followed by valid ones stay
// (readers skip them), a torn tail is left out.
func ValidPrefix(b []byte) int {
	off := 0
	for off < len(b) {
		_, n, err := parseRecord(b[off:])
		if err == nil {
			off += n
			continue
		}
		next := nextValid(b, off+1)
		if next < 0 {
			return off
		}
		off = next
	}
	return off
}
