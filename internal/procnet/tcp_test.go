package procnet

import (
	"os"
	"strings"
	"testing"
)

// Captured from /proc/1/net/tcp and tcp6 on Linux 6.18.
const (
	tcp4 = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 588 1 000000001f336a46 100 0 0 10 0                       
   1: 0100007F:8425 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 87789 2 0000000035133338 100 0 0 10 0                     
   2: 0100007F:8425 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000035133338 20 4 30 10 -1                      
`
	tcp6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
`
)

func TestParseListening(t *testing.T) {
	ls, err := ParseListening(strings.NewReader(tcp4))
	if err != nil || len(ls) != 2 || ls[0] != (Listening{2024, 588}) || ls[1] != (Listening{33829, 87789}) {
		t.Errorf("tcp: %+v, %v", ls, err)
	}
	ls, err = ParseListening(strings.NewReader(tcp6))
	if err != nil || len(ls) != 1 || ls[0] != (Listening{8080, 4242}) {
		t.Errorf("tcp6: %+v, %v", ls, err)
	}
	for _, bad := range []string{"h\n 0: x\n", "h\n 0: 0000:ZZZZ 0:0 0A a b c d e 5\n", "h\n 0: 00:0050 0:0 0A a b c d e x\n", "h\n 0: nocolon 0:0 0A a b c d e 5\n"} {
		if _, err := ParseListening(strings.NewReader(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestReadListeningSelf(t *testing.T) {
	if _, err := ReadListening("/proc", os.Getpid()); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseListening(f *testing.F) {
	f.Add(tcp4)
	f.Add(tcp6)
	f.Fuzz(func(t *testing.T, s string) { _, _ = ParseListening(strings.NewReader(s)) })
}
