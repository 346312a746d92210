package procfd

import (
	"fmt"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

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

func TestParseStat(t *testing.T) {
	for _, c := range []struct {
		in    string
		state string
		ppid  int
		ok    bool
	}{
		{"1234 (nginx) T 1 1234 1234 0 -1", "T", 1, true},
		{"77 (a) b) c) S 76 77", "S", 76, true},
		{"77 (x) S", "", 0, false},
		{"77 x S 1", "", 0, false},
		{"77 (x) SS 1", "", 0, false},
		{"77 (x) S -3", "", 0, false},
	} {
		st, pp, ok := ParseStat([]byte(c.in))
		if st != c.state || pp != c.ppid || ok != c.ok {
			t.Errorf("%q = %q %d %v", c.in, st, pp, ok)
		}
	}
}

func TestParseEpollTargets(t *testing.T) {
	in := "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\n" +
		"tfd:        6 events:       19 data:                6  pos:0 ino:4d2 sdev:8\n" +
		"tfd:       12 events:       19 data:                c  pos:0 ino:4d3 sdev:8\n"
	if got := ParseEpollTargets([]byte(in)); len(got) != 2 || got[0] != 6 || got[1] != 12 {
		t.Errorf("targets %v", got)
	}
	if got := ParseEpollTargets([]byte("tfd:\ntfd: x\n")); got != nil {
		t.Errorf("garbage gave %v", got)
	}
}

func TestRoles(t *testing.T) {
	ps := []snapshot.Process{{PID: 10, PPID: 1}, {PID: 11, PPID: 10}, {PID: 12, PPID: 10}, {PID: 50, PPID: 1}}
	Roles(ps)
	if ps[0].Role != snapshot.RoleMaster || ps[1].Role != snapshot.RoleWorker || ps[2].Role != snapshot.RoleWorker || ps[3].Role != "" {
		t.Errorf("roles %+v", ps)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1 (init) S 0 1 1"))
	f.Fuzz(func(t *testing.T, b []byte) { _, _, _ = ParseStat(b) })
}

func FuzzParseEpollTargets(f *testing.F) {
	f.Add([]byte("tfd:        6 events:       19 data: 6\n"))
	f.Fuzz(func(t *testing.T, b []byte) { _ = ParseEpollTargets(b) })
}

// TestEpollTargetsStream: an epoll watching 10,000 sockets, read a byte at
// a time through a buffer of 128 bytes: every target, in order.
func TestEpollTargetsStream(t *testing.T) {
	var in strings.Builder
	in.WriteString("pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1057\n")
	for fd := range 10000 {
		fmt.Fprintf(&in, "tfd: %8d events:       19 data:       1a00000%d  pos:0 ino:%x sdev:8\n", fd, fd, 1000+fd)
	}
	var got []int
	err := EpollTargets(iotest.OneByteReader(strings.NewReader(in.String())), make([]byte, 128), func(fd int) { got = append(got, fd) })
	if err != nil || len(got) != 10000 || got[0] != 0 || got[9999] != 9999 {
		t.Errorf("%d targets (%v), want 10000", len(got), err)
	}
}
