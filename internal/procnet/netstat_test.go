package procnet

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// tcpExt reads one TcpExt field of a fixture the simple way, as an oracle.
func tcpExt(t *testing.T, file, name string) (uint64, bool) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		names := strings.Fields(sc.Text())
		sc.Scan()
		values := strings.Fields(sc.Text())
		if names[0] != "TcpExt:" {
			continue
		}
		for i, n := range names {
			if n == name {
				v, err := strconv.ParseUint(values[i], 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return v, true
			}
		}
	}
	return 0, false
}

func TestReadCountersFixtures(t *testing.T) {
	for _, dir := range []string{"testdata/linux-6.18", "testdata/old"} {
		t.Run(dir, func(t *testing.T) {
			c, err := ReadCounters(dir, 1)
			if err != nil {
				t.Fatal(err)
			}
			file := dir + "/1/net/netstat"
			for _, nv := range []struct {
				name string
				got  *uint64
			}{
				{"ListenOverflows", c.ListenOverflows},
				{"ListenDrops", c.ListenDrops},
				{"TCPReqQFullDrop", c.TCPReqQFullDrop},
				{"TCPReqQFullDoCookies", c.TCPReqQFullDoCookies},
				{"SyncookiesSent", c.SyncookiesSent},
				{"SyncookiesRecv", c.SyncookiesRecv},
				{"SyncookiesFailed", c.SyncookiesFailed},
				{"TCPFastOpenListenOverflow", c.TCPFastOpenListenOverflow},
			} {
				want, present := tcpExt(t, file, nv.name)
				switch {
				case !present && nv.got != nil:
					t.Errorf("%s = %d, but the kernel does not report it", nv.name, *nv.got)
				case present && nv.got == nil:
					t.Errorf("%s missing", nv.name)
				case present && *nv.got != want:
					t.Errorf("%s = %d, want %d", nv.name, *nv.got, want)
				}
			}
		})
	}
	c, _ := ReadCounters("testdata/old", 1)
	if c.ListenOverflows == nil || *c.ListenOverflows != 105 || c.TCPReqQFullDrop != nil {
		t.Errorf("old kernel fixture: %+v", c)
	}
}

func TestReadCountersErrors(t *testing.T) {
	if _, err := ReadCounters("testdata/nonexistent", 1); err == nil {
		t.Error("missing root accepted")
	}
	if _, err := ReadCounters("testdata/linux-6.18", 2); err == nil {
		t.Error("missing pid accepted")
	}
	dir := t.TempDir()
	os.MkdirAll(dir+"/1/net", 0o755)
	os.WriteFile(dir+"/1/net/netstat", []byte("TcpExt: A B\nTcpExt: 1\n"), 0o644)
	if _, err := ReadCounters(dir, 1); err == nil {
		t.Error("mismatched field count accepted")
	}
}
