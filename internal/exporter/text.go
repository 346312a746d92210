package exporter

import (
	"bufio"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

// The text exposition of the five per-listener families, written directly:
// at 10,000 listeners they are 50,000 of a scrape's samples, and through
// dto.Metric and expfmt they cost more than the collection
// (docs/performance.md). The bytes are those expfmt.MetricFamilyToText
// writes for the same samples (TestTextEqualsExpfmt). With gzip they go as
// compressed segments kept while their series and values do not change
// (segment; TestGzipSegments).

// listenerMetrics are the families with one sample per listener series.
var listenerMetrics = []*metric{mAcceptQueue, mAcceptQueuePeak, mBacklog, mSynQueue, mDrops}

// seriesText is what a series writes the same at every scrape while its
// labels do not change, which is a socket's whole life: the label block
// of its samples and the key that orders them.
type seriesText struct {
	key textKey
	// The label values that are not strings in the key.
	address, port, inode string
	// labels is `{address="…",…,socket_inode="…"}`, escaped as the text
	// format wants label values.
	labels string
	// sortKey orders series as compareLabels orders their samples: each
	// label value in listenerLabels order, a NUL in a value written as
	// NUL 0xff and each value ended by NUL NUL, so that comparing keys
	// as strings compares the values one by one.
	sortKey string
	// rank is the series' place in the last collection that had it,
	// sorted; seen that collection's number. Written by collections
	// only (sortByLabels, labelTexts).
	rank int
	seen uint64
}

// textKey identifies a series' labels: the key and the family, the only
// label not derived from it.
type textKey struct {
	seriesKey
	family string
}

// labelTexts gives every series its seriesText and the label values
// address, port and inode, from texts (the previous collection's, by socket
// inode) when it had the same labels; it leaves in texts those of this
// collection, whose number is n: only the values are written anew at each
// scrape. known tells whether every series was in the previous one.
func labelTexts(ss []series, texts map[uint32]*seriesText, n uint64) (known bool) {
	known = true
	var labels, key strings.Builder
	for i := range ss {
		s := &ss[i]
		k := textKey{s.key, s.family}
		t := texts[k.inode]
		if t == nil || t.key != k {
			known = false
			t = &seriesText{key: k, inode: strconv.FormatUint(uint64(k.inode), 10)}
			if s.family != snapshot.FamilyUnix {
				t.address, t.port = k.address.String(), strconv.Itoa(int(k.port))
			}
			values := [...]string{t.address, s.key.container, s.family, s.key.namespace, s.key.netns, s.key.path, s.key.pod, t.port, s.key.process, t.inode}
			labels.Reset()
			key.Reset()
			sep := byte('{')
			for j, v := range values {
				labels.WriteByte(sep)
				sep = ','
				labels.WriteString(listenerLabels[j])
				labels.WriteString(`="`)
				labelEscaper.WriteString(&labels, v)
				labels.WriteByte('"')
				sortKeyEscaper.WriteString(&key, v)
				key.WriteString("\x00\x00")
			}
			labels.WriteByte('}')
			t.labels, t.sortKey = labels.String(), key.String()
		}
		s.text, t.seen = t, n
		s.address, s.port, s.inode = t.address, t.port, t.inode
		texts[k.inode] = t
	}
	if len(texts) > len(ss) {
		for inode, t := range texts {
			if t.seen != n {
				delete(texts, inode) // gone, or its socket's labels changed
			}
		}
	}
	return known
}

var (
	// As expfmt escapes label values and help texts.
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

	sortKeyEscaper = strings.NewReplacer("\x00", "\x00\xff")
)

// textHeader is a family's HELP and TYPE lines.
func textHeader(m *metric) string {
	typ := " gauge\n"
	if m.typ == counter {
		typ = " counter\n"
	}
	return "# HELP " + m.name + " " + helpEscaper.Replace(m.help) + "\n# TYPE " + m.name + typ
}

var textHeaders = func() map[*metric]string {
	h := make(map[*metric]string, len(listenerMetrics))
	for _, m := range listenerMetrics {
		h[m] = textHeader(m)
	}
	return h
}()

// value is the series' sample in family m; false when it has none there
// (a SYN queue or drops the kernel did not report).
func (s *series) value(m *metric) (float64, bool) {
	switch m {
	case mAcceptQueue:
		return float64(s.acceptQueue), true
	case mAcceptQueuePeak:
		return float64(s.peak), true
	case mBacklog:
		return float64(s.backlog), true
	case mSynQueue:
		return float64(s.synQueue), s.hasSyn
	case mDrops:
		return float64(s.drops), s.hasDrops
	}
	return 0, false
}

// hasListenerFamily tells whether family m has a sample: a family without
// one is left out, as build leaves it out.
func (r *result) hasListenerFamily(m *metric) bool {
	for i := range r.listeners {
		if _, ok := r.listeners[i].value(m); ok {
			return true
		}
	}
	return false
}

// writeListenerText writes family m of the listener series, values as
// they are in this collection. num is scratch space, returned for reuse.
func (r *result) writeListenerText(w *bufio.Writer, m *metric, num []byte) []byte {
	w.WriteString(textHeaders[m])
	for i := range r.listeners {
		s := &r.listeners[i]
		v, ok := s.value(m)
		if !ok {
			continue
		}
		w.WriteString(m.name)
		w.WriteString(s.text.labels)
		num = append(appendValue(append(num[:0], ' '), v), '\n')
		w.Write(num)
	}
	return num
}

// appendValue appends v as expfmt writes a sample value: the shortest
// 'g' form, which for integers below 1e6 is their decimal digits.
func appendValue(b []byte, v float64) []byte {
	if v >= 0 && v < 1e6 && v == float64(uint64(v)) {
		return strconv.AppendUint(b, uint64(v), 10)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// segmentSeries is how many series a compressed segment of a listener
// family holds: ~150 KB of text. Each is compressed alone, so the body is
// ~5 % larger than one stream's (0.36 MB against 0.345 MB at 10,000
// listeners), and a value that changes costs one segment's compression.
const segmentSeries = 512

// segment is the compressed text of family m's samples for the series
// [i*segmentSeries, (i+1)*segmentSeries) of a collection, the first after
// the family's HELP and TYPE: kept while the next collection has the same
// series there with the same values, which for idle listeners is every
// collection. Immutable once made.
type segment struct {
	key   segmentKey
	texts []*seriesText
	vals  []float64 // -1: no sample
	out   []byte
	crc   uint32
	n     int
}

type segmentKey struct {
	m *metric
	i int
}

// segmentCache holds the last collection's segments, for the next one.
type segmentCache struct {
	mu   sync.Mutex
	last map[segmentKey]*segment
}

// segments returns the compressed segments of family m, made once per
// collection, taken from the previous one where series and values are
// the same: values are those of this collection either way.
func (r *result) segments(m *metric) []*segment {
	r.segOnce.Do(r.makeSegments)
	return r.segs[m]
}

func (r *result) makeSegments() {
	c := r.segCache
	c.mu.Lock()
	defer c.mu.Unlock()
	r.segs = make(map[*metric][]*segment)
	next := make(map[segmentKey]*segment)
	var todo []*segment
	for _, m := range listenerMetrics {
		if !r.hasListenerFamily(m) {
			continue
		}
		for i := 0; i*segmentSeries < len(r.listeners); i++ {
			ss := r.listeners[i*segmentSeries : min((i+1)*segmentSeries, len(r.listeners))]
			k := segmentKey{m, i}
			seg := c.last[k]
			if seg == nil || !seg.holds(ss) {
				seg = &segment{key: k, texts: make([]*seriesText, len(ss)), vals: make([]float64, len(ss))}
				for j := range ss {
					seg.texts[j], seg.vals[j] = ss[j].text, sampleOf(&ss[j], m)
				}
				todo = append(todo, seg)
			}
			next[k] = seg
			r.segs[m] = append(r.segs[m], seg)
		}
	}
	// Only what changed is compressed, on every CPU.
	var wg sync.WaitGroup
	work := make(chan *segment)
	for range min(len(todo), runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			var text []byte
			for seg := range work {
				text = seg.appendText(text[:0])
				seg.n = len(text)
				seg.out, seg.crc = deflateSegment(text)
			}
		})
	}
	for _, seg := range todo {
		work <- seg
	}
	close(work)
	wg.Wait()
	c.last = next
}

// sampleOf is the series' value in family m, -1 when it has none there.
func sampleOf(s *series, m *metric) float64 {
	if v, ok := s.value(m); ok {
		return v
	}
	return -1
}

// holds tells whether seg is the segment of these series: the same series
// (their texts) with the same values.
func (seg *segment) holds(ss []series) bool {
	if len(ss) != len(seg.texts) {
		return false
	}
	for j := range ss {
		if ss[j].text != seg.texts[j] || sampleOf(&ss[j], seg.key.m) != seg.vals[j] {
			return false
		}
	}
	return true
}

// appendText appends the segment's samples as writeListenerText writes
// them, after the family's HELP and TYPE in its first segment.
func (seg *segment) appendText(b []byte) []byte {
	m := seg.key.m
	if seg.key.i == 0 {
		b = append(b, textHeaders[m]...)
	}
	for j, t := range seg.texts {
		if v := seg.vals[j]; v >= 0 {
			b = append(b, m.name...)
			b = append(b, t.labels...)
			b = append(appendValue(append(b, ' '), v), '\n')
		}
	}
	return b
}
