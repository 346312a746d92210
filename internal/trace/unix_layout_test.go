//go:build 386 || amd64

package trace

import (
	"encoding/binary"
	"testing"
)

// TestUnixEventLayout: the decoder's offsets are those of struct
// unix_event as compiled.
func TestUnixEventLayout(t *testing.T) {
	in := bpfUnixEvent{TsNs: 7, Pid: 1, Tid: 2, Netns: 3, Namelen: 4, Type: 5}
	copy(in.Path[:], "\x00abc")
	in.Comm[0] = 'x'
	b, err := binary.Append(nil, binary.NativeEndian, &in)
	if err != nil {
		t.Fatal(err)
	}
	r, err := decodeUnixEvent(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.TsNs != 7 || r.Pid != 1 || r.Tid != 2 || r.Netns != 3 || r.Namelen != 4 || r.Type != 5 || r.Comm[0] != 'x' || r.name() != "@abc" {
		t.Errorf("decoded %+v", r)
	}
}
