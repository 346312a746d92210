package procnet

import "testing"

const sockstat = `sockets: used 12
TCP: inuse 40002 orphan 0 tw 4 alloc 40003 mem 56
UDP: inuse 0 mem 0
`

func TestParseSockstatInUse(t *testing.T) {
	if n, ok := ParseSockstatInUse([]byte(sockstat), "TCP"); !ok || n != 40002 {
		t.Errorf("TCP: %d %v, want 40002", n, ok)
	}
	if n, ok := ParseSockstatInUse([]byte("TCP6: inuse 3\nUDP6: inuse 1\n"), "TCP6"); !ok || n != 3 {
		t.Errorf("TCP6: %d %v, want 3", n, ok)
	}
	for _, bad := range []string{"", "TCP: orphan 0\n", "TCP: inuse x\n", "TCP: inuse -1\n", "TCP6: inuse 3\n", "TCP: inuse"} {
		if n, ok := ParseSockstatInUse([]byte(bad), "TCP"); ok {
			t.Errorf("%q: %d accepted", bad, n)
		}
	}
}

func FuzzParseSockstatInUse(f *testing.F) {
	f.Add([]byte(sockstat))
	f.Add([]byte("TCP: inuse"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if n, ok := ParseSockstatInUse(b, "TCP"); ok && n < 0 {
			t.Errorf("negative count %d", n)
		}
	})
}
