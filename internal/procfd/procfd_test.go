package procfd

import "testing"

func TestParseSocketLink(t *testing.T) {
	for _, c := range []struct {
		in   string
		ino  uint32
		isok bool
	}{
		{"socket:[123456]", 123456, true},
		{"socket:[4294967295]", 4294967295, true},
		{"socket:[4294967296]", 0, false},
		{"socket:[]", 0, false},
		{"socket:[12", 0, false},
		{"pipe:[123]", 0, false},
		{"/dev/null", 0, false},
		{"socket:[-1]", 0, false},
	} {
		ino, ok := ParseSocketLink([]byte(c.in))
		if ino != c.ino || ok != c.isok {
			t.Errorf("%q = %d, %v; want %d, %v", c.in, ino, ok, c.ino, c.isok)
		}
	}
}

func FuzzParseSocketLink(f *testing.F) {
	f.Add([]byte("socket:[123]"))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseSocketLink(b) })
}
