package trace

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestSlots(t *testing.T) {
	prevHi := time.Duration(0)
	for i := range histSlots {
		lo, hi := slotBounds(i)
		if lo != prevHi || hi <= lo {
			t.Fatalf("slot %d [%v, %v) does not follow %v", i, lo, hi, prevHi)
		}
		if got := SlotOf(lo); got != i {
			t.Errorf("SlotOf(%v) = %d, want %d", lo, got, i)
		}
		if i < histSlots-1 {
			if got := SlotOf(hi - time.Microsecond); got != i {
				t.Errorf("SlotOf(%v) = %d, want %d", hi-time.Microsecond, got, i)
			}
			// At most 25% wide above 4 µs: "within one slot" is tight.
			if i >= 4 && float64(hi-lo) > 0.25*float64(lo) {
				t.Errorf("slot %d [%v, %v) is wider than a quarter", i, lo, hi)
			}
		}
		prevHi = hi
	}
	if SlotOf(-time.Second) != 0 || SlotOf(1000*time.Hour) != histSlots-1 {
		t.Error("out-of-range durations not clamped")
	}
}

func TestQuantiles(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.QuantileSlot(0.5) != -1 {
		t.Error("empty histogram")
	}
	for i := 1; i <= 100; i++ {
		d := time.Duration(i) * time.Millisecond
		h.Slots[SlotOf(d)]++
		h.Count++
		h.Sum += d
		h.Max = max(h.Max, d)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.9, 90 * time.Millisecond}, {0.99, 99 * time.Millisecond}} {
		if got, want := h.QuantileSlot(c.q), SlotOf(c.want); got != want {
			t.Errorf("q%v in slot %d, want %d", c.q, got, want)
		}
		got := h.Quantile(c.q)
		if d := got - c.want; d < -c.want/4 || d > c.want/4 {
			t.Errorf("q%v = %v, want about %v", c.q, got, c.want)
		}
	}
	if h.Quantile(1) > h.Max {
		t.Errorf("max quantile %v above max %v", h.Quantile(1), h.Max)
	}
	cum := h.Cumulative([]time.Duration{8192 * time.Microsecond, 65536 * time.Microsecond, time.Hour})
	if cum[0] != 8 || cum[1] != 65 || cum[2] != 100 {
		t.Errorf("cumulative %v, want [8 65 100]", cum)
	}
	var sum Histogram
	sum.Add(&h)
	sum.Add(&h)
	if sum.Count != 200 || sum.Max != h.Max || len(sum.Buckets()) != len(h.Buckets()) {
		t.Errorf("sum %+v", sum)
	}
}

func TestHistogramJSON(t *testing.T) {
	var h Histogram
	h.Slots[SlotOf(10*time.Millisecond)] = 2
	h.Count, h.Sum, h.Max = 2, 20*time.Millisecond, 10*time.Millisecond
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"count":2`, `"max_ns":10000000`, `"buckets":[{"lower_ns":8192000,"upper_ns":10240000,"count":2}]`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
}
