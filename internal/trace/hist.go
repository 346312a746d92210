package trace

import (
	"encoding/json"
	"math"
	"time"
)

// histSlots is HIST_SLOTS of bpf/backlog.c.
const histSlots = 128

// slotBounds returns the range [lo, hi) of histogram slot i, as slot() in
// bpf/backlog.c fills them: one slot per microsecond below 4 µs, then four
// slots per power of two (each at most 25% wide). The last slot is open.
func slotBounds(i int) (lo, hi time.Duration) {
	if i < 4 {
		return time.Duration(i) * time.Microsecond, time.Duration(i+1) * time.Microsecond
	}
	e, m := uint(i/4+1), int64(i%4)
	lo = time.Duration((4+m)<<(e-2)) * time.Microsecond
	hi = time.Duration((5+m)<<(e-2)) * time.Microsecond
	if i == histSlots-1 {
		hi = time.Duration(math.MaxInt64)
	}
	return lo, hi
}

// SlotOf returns the histogram slot a duration falls in, as the kernel side
// computes it; tests use it to compare with waits measured elsewhere.
func SlotOf(d time.Duration) int {
	us := uint64(max(d, 0) / time.Microsecond)
	if us < 4 {
		return int(us)
	}
	e := 63
	for us>>uint(e) == 0 {
		e--
	}
	s := 4*(e-1) + int((us>>uint(e-2))&3)
	return min(s, histSlots-1)
}

// Histogram is the distribution of accept-queue waits of one listener.
type Histogram struct {
	// Slots counts waits per slot (see Bucket for each slot's range).
	Slots [histSlots]uint64 `json:"-"`
	Count uint64            `json:"count"`
	Sum   time.Duration     `json:"sum_ns"`
	Max   time.Duration     `json:"max_ns"`
}

// Bucket is one non-empty slot of a histogram: waits in [Lower, Upper).
type Bucket struct {
	Lower time.Duration `json:"lower_ns"`
	Upper time.Duration `json:"upper_ns"`
	Count uint64        `json:"count"`
}

// Buckets returns the non-empty slots, shortest waits first.
func (h *Histogram) Buckets() []Bucket {
	var bs []Bucket
	for i, n := range h.Slots {
		if n > 0 {
			lo, hi := slotBounds(i)
			bs = append(bs, Bucket{Lower: lo, Upper: hi, Count: n})
		}
	}
	return bs
}

// Add merges another histogram into h (the kernel keeps one per CPU).
func (h *Histogram) Add(o *Histogram) {
	for i := range h.Slots {
		h.Slots[i] += o.Slots[i]
	}
	h.Count += o.Count
	h.Sum += o.Sum
	h.Max = max(h.Max, o.Max)
}

// QuantileSlot returns the slot holding the q-th quantile (0 < q <= 1), or
// -1 for an empty histogram.
func (h *Histogram) QuantileSlot(q float64) int {
	var total uint64
	for _, n := range h.Slots {
		total += n
	}
	if total == 0 {
		return -1
	}
	rank := uint64(math.Ceil(q * float64(total)))
	rank = min(max(rank, 1), total)
	var seen uint64
	for i, n := range h.Slots {
		seen += n
		if seen >= rank {
			return i
		}
	}
	return histSlots - 1
}

// Quantile estimates the q-th quantile: the middle of the slot that holds
// it, never above the largest wait seen.
func (h *Histogram) Quantile(q float64) time.Duration {
	i := h.QuantileSlot(q)
	if i < 0 {
		return 0
	}
	lo, hi := slotBounds(i)
	mid := lo + (hi-lo)/2
	if i == histSlots-1 || (h.Max > 0 && mid > h.Max) {
		return max(h.Max, lo)
	}
	return mid
}

// Cumulative returns, for each bound, how many waits were shorter than it:
// the cumulative buckets of a Prometheus histogram. Exact when every bound
// is a slot boundary (a power of two of microseconds always is).
func (h *Histogram) Cumulative(bounds []time.Duration) []uint64 {
	out := make([]uint64, len(bounds))
	for i, n := range h.Slots {
		if n == 0 {
			continue
		}
		_, hi := slotBounds(i)
		for j, b := range bounds {
			if hi <= b {
				out[j] += n
			}
		}
	}
	return out
}

// MarshalJSON writes the count, sum, maximum, the p50/p90/p99 estimates and
// the non-empty buckets, durations in nanoseconds.
func (h Histogram) MarshalJSON() ([]byte, error) {
	type out struct {
		Count   uint64        `json:"count"`
		Sum     time.Duration `json:"sum_ns"`
		Max     time.Duration `json:"max_ns"`
		P50     time.Duration `json:"p50_ns"`
		P90     time.Duration `json:"p90_ns"`
		P99     time.Duration `json:"p99_ns"`
		Buckets []Bucket      `json:"buckets"`
	}
	b := h.Buckets()
	if b == nil {
		b = []Bucket{}
	}
	return json.Marshal(out{h.Count, h.Sum, h.Max, h.Quantile(0.5), h.Quantile(0.9), h.Quantile(0.99), b})
}
