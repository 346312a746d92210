//go:build 386 || amd64

package trace

import (
	"encoding/binary"
	"testing"
)

// TestEventLayout: the decoder's offsets are those of struct event as
// compiled (bpf2go derives bpfEvent from the object's BTF).
func TestEventLayout(t *testing.T) {
	if n := binary.Size(bpfEvent{}); n != eventSize {
		t.Fatalf("sizeof(struct event) = %d, decoder expects %d", n, eventSize)
	}
	want := sample()
	in := bpfEvent{
		TsNs: want.TsNs, Ino: want.Ino, Netns: want.Netns, Pid: want.Pid,
		AcceptQueue: want.AcceptQueue, SynQueue: want.SynQueue, Backlog: want.Backlog,
		Lport: want.Lport, Rport: want.Rport, Stage: want.Stage, Family: want.Family, Lfamily: want.Lfamily,
		Laddr: want.Laddr, Daddr: want.Daddr, Raddr: want.Raddr,
	}
	for i, c := range want.Comm {
		in.Comm[i] = int8(c)
	}
	b, err := binary.Append(nil, binary.NativeEndian, &in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeEvent(b)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}
	if n := binary.Size(bpfHist{}); n != 8*(histSlots+3) {
		t.Errorf("sizeof(struct hist) = %d, want %d slots + 3 words", n, histSlots)
	}
}
