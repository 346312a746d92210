package sockdiag

import (
	"os"
	"testing"
)

func BenchmarkParseDump(b *testing.B) {
	raw, err := os.ReadFile("testdata/listen_inet.bin")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		st := dumpState{seq: 1}
		if err := st.parseBuffer(raw, func(body []byte) error {
			_, err := UnmarshalSocket(body)
			return err
		}); err != nil {
			b.Fatal(err)
		}
	}
}
