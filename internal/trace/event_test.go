package trace

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// record builds the bytes of one struct event as the program writes them.
func record(r rawEvent) []byte {
	b := make([]byte, eventSize)
	ne := binary.NativeEndian
	ne.PutUint64(b[0:], r.TsNs)
	ne.PutUint64(b[8:], r.Ino)
	ne.PutUint32(b[16:], r.Netns)
	ne.PutUint32(b[20:], r.Pid)
	ne.PutUint32(b[24:], r.AcceptQueue)
	ne.PutUint32(b[28:], r.SynQueue)
	ne.PutUint32(b[32:], r.Backlog)
	ne.PutUint16(b[36:], r.Lport)
	ne.PutUint16(b[38:], r.Rport)
	b[40], b[41], b[42] = r.Stage, r.Family, r.Lfamily
	copy(b[48:], r.Laddr[:])
	copy(b[64:], r.Daddr[:])
	copy(b[80:], r.Raddr[:])
	copy(b[96:], r.Comm[:])
	return b
}

func sample() rawEvent {
	r := rawEvent{
		TsNs: 123456789, Ino: 4242, Netns: 4026531840, Pid: 77,
		AcceptQueue: 6, SynQueue: 0, Backlog: 5, Lport: 8080, Rport: 40000,
		Stage: uint8(StageSyn), Family: afInet, Lfamily: afInet6,
	}
	copy(r.Daddr[:], []byte{127, 0, 0, 1})
	copy(r.Raddr[:], []byte{127, 0, 0, 2})
	copy(r.Comm[:], "server")
	return r
}

func TestDecodeEvent(t *testing.T) {
	want := sample()
	got, err := decodeEvent(record(want))
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}
	e := got.event()
	if e.Listener != netip.MustParseAddrPort("[::]:8080") || e.Local != netip.MustParseAddr("127.0.0.1") ||
		e.Peer != netip.MustParseAddrPort("127.0.0.2:40000") || e.Monotonic != 123456789*time.Nanosecond {
		t.Errorf("event %+v", e)
	}
	if len(e.Processes) != 1 || e.Processes[0].PID != 77 || e.Processes[0].Comm != "server" {
		t.Errorf("processes %+v", e.Processes)
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"stage":"syn"`, `"listener":"[::]:8080"`, `"peer":"127.0.0.2:40000"`, `"accept_queue":6`} {
		if !strings.Contains(string(b), s) {
			t.Errorf("JSON %s lacks %s", b, s)
		}
	}
}

func TestDecodeEventRejects(t *testing.T) {
	good := record(sample())
	if _, err := decodeEvent(good[:eventSize-1]); !errors.Is(err, errShortEvent) {
		t.Errorf("short record: %v", err)
	}
	if _, err := decodeEvent(append(bytes.Clone(good), 0, 0, 0, 0, 0, 0, 0, 0)); err != nil {
		t.Errorf("a longer record (newer program) is fine: %v", err)
	}
	bad := bytes.Clone(good)
	bad[40] = 99
	if _, err := decodeEvent(bad); err == nil {
		t.Error("unknown stage accepted")
	}
	bad = bytes.Clone(good)
	bad[41] = 1
	if _, err := decodeEvent(bad); err == nil {
		t.Error("unknown family accepted")
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add(record(sample()))
	r := sample()
	r.Stage, r.Family, r.Lfamily = uint8(StageCookie), afInet6, afInet6
	f.Add(record(r))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeEvent(b)
		if err != nil {
			return
		}
		e := r.event()
		if !e.Listener.IsValid() || !e.Peer.IsValid() || !e.Local.IsValid() {
			t.Fatalf("invalid addresses from %x: %+v", b, e)
		}
		if _, err := json.Marshal(e); err != nil {
			t.Fatal(err)
		}
		// Decoding is a pure function of the first eventSize bytes.
		again, err := decodeEvent(record(r))
		if err != nil || again != r {
			t.Fatalf("re-encoding changed %+v into %+v (%v)", r, again, err)
		}
	})
}

func TestStageText(t *testing.T) {
	for _, s := range Stages {
		b, _ := s.MarshalText()
		var back Stage
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Errorf("%v → %s → %v, %v", s, b, back, err)
		}
	}
	var s Stage
	if s.UnmarshalText([]byte("nope")) == nil {
		t.Error("unknown name accepted")
	}
}
