package trace

import (
	"encoding/binary"
	"errors"
	"testing"
	"unicode/utf8"
)

func unixRecord(namelen uint32, path string) []byte {
	b := make([]byte, 160)
	ne := binary.NativeEndian
	ne.PutUint64(b[0:], 123)
	ne.PutUint32(b[8:], 900)
	ne.PutUint32(b[12:], 901)
	ne.PutUint32(b[16:], 4026531840)
	ne.PutUint32(b[20:], namelen)
	ne.PutUint16(b[24:], 1)
	copy(b[32:], "nginx")
	copy(b[48:], path)
	return b
}

func TestDecodeUnixEvent(t *testing.T) {
	for _, c := range []struct {
		namelen uint32
		path    string
		want    string
	}{
		{25, "/run/php/php8.2-fpm.sock\x00", "/run/php/php8.2-fpm.sock"},
		{24, "/run/php/php8.2-fpm.sock", "/run/php/php8.2-fpm.sock"},
		{6, "\x00a\x00bcd", "@a@bcd"},
		{0, "", ""},
	} {
		r, err := decodeUnixEvent(unixRecord(c.namelen, c.path))
		if err != nil {
			t.Fatal(err)
		}
		u := r.refusal()
		if u.Path != c.want || u.Client.PID != 900 || u.Client.Comm != "nginx" || u.Netns != 4026531840 || u.Type != "stream" || u.Stage != StageUnixRefused {
			t.Errorf("%q: %+v", c.path, u)
		}
	}
	if _, err := decodeUnixEvent(unixRecord(0, "")[:155]); !errors.Is(err, errShortEvent) {
		t.Errorf("short record: %v", err)
	}
	if _, err := decodeUnixEvent(unixRecord(109, "")); err == nil {
		t.Error("a name longer than sun_path accepted")
	}
}

func FuzzDecodeUnixEvent(f *testing.F) {
	f.Add(unixRecord(25, "/run/php/php8.2-fpm.sock\x00"))
	f.Add(unixRecord(3, "\x00\xff\xfe"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeUnixEvent(b)
		if err != nil {
			return
		}
		if len(b) < unixEventSize {
			t.Fatalf("accepted %d bytes", len(b))
		}
		if u := r.refusal(); !utf8.ValidString(u.Path) {
			t.Fatalf("invalid UTF-8 path %q", u.Path)
		}
	})
}
