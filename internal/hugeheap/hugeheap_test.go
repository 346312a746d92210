package hugeheap

import "testing"

func TestFreeHugePages(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     int
		bad      bool
	}{
		// This machine's: orders 9 and 10 of each zone; order 8 counts not.
		{"three zones", `Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3 
Node 0, zone    DMA32   1362   1335   1259   1131   1022    889    753    618    454    267    320 
Node 0, zone   Normal   9711   5825   5310   4958   2623   2540   1540    888    625    804   3793 
`, 1 + 3*2 + 267 + 320*2 + 804 + 3793*2, false},
		{"fragmented", "Node 0, zone   Normal   9711   5825   5310   4958   2623   2540   1540    888    625      0      0\n", 0, false},
		{"two nodes", "Node 0, zone Normal 0 0 0 0 0 0 0 0 0 2 1\nNode 1, zone Normal 0 0 0 0 0 0 0 0 0 0 4\n", 2 + 2 + 8, false},
		{"empty", "", 0, false},
		{"not buddyinfo", "MemTotal: 1 kB\n", 0, true},
		{"bad count", "Node 0, zone Normal 0 0 0 0 0 0 0 0 0 x 1\n", 0, true},
		{"negative", "Node 0, zone Normal 0 0 0 0 0 0 0 0 0 -1 1\n", 0, true},
	} {
		got, err := freeHugePages([]byte(c.in))
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("%s: %d, %v; want %d, error %v", c.name, got, err, c.want, c.bad)
		}
	}
}
