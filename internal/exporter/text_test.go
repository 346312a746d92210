package exporter

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

// awkward is twoNamespaces with what the text format must escape or spell
// in a particular way: quotes, backslashes and newlines in label values,
// a NUL in an abstract UNIX name, values of 1e6 and above ('g' switches to
// an exponent there), unknown SYN queues and drops beside known ones.
func awkward() *snapshot.Snapshot {
	s := twoNamespaces()
	big := listener(1, "10.0.0.1", 8080, 20, 1_000_000, 4_000_000_000, 123_456_789_012, `a"b\c`+"\nd")
	big.SynQueue = ptr[uint32](999_999)
	unknown := listener(2, "::1", 443, 21, 1, 1, 0, "x y")
	unknown.Drops = nil
	abstract := snapshot.Listener{Netns: 1, Family: snapshot.FamilyUnix, Path: "@ctl\x00sock", Inode: 22,
		AcceptQueue: 2, Backlog: 16, SynQueue: ptr[uint32](0), Processes: []snapshot.Process{{PID: 9, Comm: "a\\"}}}
	file := snapshot.Listener{Netns: 1, Family: snapshot.FamilyUnix, Path: "/run/ctl.sock", Inode: 23, Backlog: 16}
	s.Listeners = append(s.Listeners, big, unknown, abstract, file)
	return s
}

// TestTextEqualsExpfmt: the text that writeText writes, per-listener
// families directly, is the text expfmt makes of the same collection's
// families, byte for byte, in every text format serve negotiates.
func TestTextEqualsExpfmt(t *testing.T) {
	for _, snap := range []*snapshot.Snapshot{twoNamespaces(), awkward(), {}} {
		e := fake(snap, nil, Options{})
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector())
		h := Handler(slog.New(slog.DiscardHandler), 0, e, reg).(*handler)
		// The second collection sorts by the first one's order (ranks),
		// its listeners given in the reverse order.
		for round := range 2 {
			slices.Reverse(snap.Listeners)
			g := h.shared.gather()
			all, err := h.shared.merge(g)
			if err != nil {
				t.Fatal(err)
			}
			for _, format := range []expfmt.Format{
				expfmt.NewFormat(expfmt.TypeTextPlain),
				expfmt.Negotiate(http.Header{"Accept": {"text/plain;version=1.0.0;escaping=allow-utf-8"}}),
				expfmt.Negotiate(http.Header{"Accept": {"text/plain;version=0.0.4;escaping=underscores"}}),
			} {
				var want, got bytes.Buffer
				enc := expfmt.NewEncoder(&want, format)
				for _, mf := range all {
					if err := enc.Encode(mf); err != nil {
						t.Fatal(err)
					}
				}
				if err := h.writeText(&got, nil, format, g, nil); err != nil {
					t.Fatal(err)
				}
				if got.String() != want.String() {
					t.Errorf("%d listeners, collection %d, %s: direct text differs from expfmt's:\n%s", len(snap.Listeners), round+1, format, lineDiff(want.String(), got.String()))
				}
				if len(snap.Listeners) > 0 && !strings.Contains(got.String(), "backlog_listener_accept_queue{") {
					t.Errorf("no listener series in:\n%s", got.String())
				}
			}
		}
	}
}

// lineDiff shows the first line where a and b differ.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range max(len(al), len(bl)) {
		x, y := "(none)", "(none)"
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\nexpfmt: %q\ndirect: %q", i+1, x, y)
		}
	}
	return "(equal)"
}

// TestHandlerAsPromhttp: serve's handler answers as promhttp.HandlerFor
// over the same metrics: the same content type and Vary, compression when
// asked, the same metrics in every format, protobuf too.
func TestHandlerAsPromhttp(t *testing.T) {
	e := fake(awkward(), nil, Options{})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	ours := Handler(slog.New(slog.DiscardHandler), 0, e, reg)
	theirs := promhttp.HandlerFor(prometheus.Gatherers{reg, e}, promhttp.HandlerOpts{})
	prom := "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
	for _, c := range []struct{ accept, encoding, wantEncoding string }{
		{"", "", ""},
		{prom, "gzip", "gzip"},
		{prom, "identity", ""},
		{"text/plain;version=0.0.4", "gzip;q=0.5, identity;q=0.9", ""},
		{"text/plain", "*", ""}, // identity wins the tie, as promhttp's first offer
		{"text/plain", "br, gzip;q=0.1", "gzip"},
		{"text/plain", "gzip;q=0", ""},
		{"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited", "gzip", "gzip"},
	} {
		serve := func(h http.Handler) (*http.Response, map[string]*dto.MetricFamily) {
			req := httptest.NewRequest("GET", "/metrics", nil)
			if c.accept != "" {
				req.Header.Set("Accept", c.accept)
			}
			if c.encoding != "" {
				req.Header.Set("Accept-Encoding", c.encoding)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			rsp := rec.Result()
			var body io.Reader = rsp.Body
			if rsp.Header.Get("Content-Encoding") == "gzip" {
				zr, err := gzip.NewReader(rsp.Body)
				if err != nil {
					t.Fatal(err)
				}
				body = zr
			}
			mfs := map[string]*dto.MetricFamily{}
			dec := expfmt.NewDecoder(body, expfmt.ResponseFormat(rsp.Header))
			for {
				mf := &dto.MetricFamily{}
				if err := dec.Decode(mf); err == io.EOF {
					break
				} else if err != nil {
					t.Fatalf("Accept %q: %v", c.accept, err)
				}
				mfs[mf.GetName()] = mf
			}
			return rsp, mfs
		}
		rsp, got := serve(ours)
		ref, want := serve(theirs)
		for _, h := range []string{"Content-Type", "Content-Encoding"} {
			if rsp.Header.Get(h) != ref.Header.Get(h) {
				t.Errorf("Accept %q, Accept-Encoding %q: %s %q, promhttp's %q", c.accept, c.encoding, h, rsp.Header.Get(h), ref.Header.Get(h))
			}
		}
		if g, w := rsp.Header.Get("Content-Encoding"), c.wantEncoding; g != w {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, want %q", c.encoding, g, w)
		}
		if g, w := rsp.Header.Values("Vary"), ref.Header.Values("Vary"); !slices.Equal(g, w) {
			t.Errorf("Vary %q, promhttp's %q", g, w)
		}
		for name, mf := range want {
			switch {
			case strings.HasPrefix(name, "go_"), name == "backlog_scrape_duration_seconds", name == "backlog_collections_total":
				continue // differ from one gather to the next
			}
			if got[name].String() != mf.String() {
				t.Errorf("Accept %q: %s\n%s\npromhttp's\n%s", c.accept, name, got[name], mf)
			}
		}
		if len(got) != len(want) || len(got) < 10 {
			t.Errorf("Accept %q: %d families, promhttp %d", c.accept, len(got), len(want))
		}
	}
}

// TestLabelTextsReused: a series keeps its label text from one collection
// to the next, and one that went away is forgotten.
func TestLabelTextsReused(t *testing.T) {
	snap := awkward()
	ss := buildSeries(snap, nil)
	texts := make(map[uint32]*seriesText)
	labelTexts(ss, texts, 1)
	again := buildSeries(snap, nil)
	known := labelTexts(again[1:], texts, 2)
	if !known {
		t.Error("series of the last collection not known")
	}
	if len(texts) != len(again)-1 {
		t.Fatalf("%d texts kept for %d series", len(texts), len(again)-1)
	}
	for i := range again[1:] {
		if again[i+1].text != ss[i+1].text {
			t.Errorf("series %d: label text built again", i+1)
		}
		if again[i+1].inode != ss[i+1].inode || again[i+1].address != ss[i+1].address {
			t.Errorf("series %d: label values %q %q, were %q %q", i+1, again[i+1].inode, again[i+1].address, ss[i+1].inode, ss[i+1].address)
		}
	}
	if _, ok := texts[ss[0].key.inode]; ok {
		t.Errorf("a series gone is remembered")
	}
	// A socket whose owner changed: same inode, new labels.
	again[1].key.process = "other"
	if labelTexts(again[1:], texts, 3) {
		t.Error("a series with new labels is known")
	}
	if again[1].text == ss[1].text || !strings.Contains(texts[again[1].key.inode].labels, `process="other"`) {
		t.Errorf("new labels of a socket not written: %q", again[1].text.labels)
	}
}

// TestGzipSegments: with gzip, the per-listener families go as segments
// compressed at an earlier scrape where nothing changed in them; what the
// client reads is still this scrape's text, the same as uncompressed,
// through new listeners, values, owners and listeners gone.
func TestGzipSegments(t *testing.T) {
	snap := &snapshot.Snapshot{Namespaces: []snapshot.Namespace{{Inode: 1, Name: "host"}}}
	for i := range 3*segmentSeries - 100 {
		snap.Listeners = append(snap.Listeners, listener(1, "127.0.0.1", uint16(10000+i), uint32(1000+i), 0, 128, 0, "idle"))
	}
	e := fake(snap, nil, Options{})
	h := Handler(slog.New(slog.DiscardHandler), 0, e)
	scrape := func(encoding string) (string, http.Header) {
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.Header.Set("Accept-Encoding", encoding)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		body := io.Reader(rec.Body)
		if rec.Header().Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(rec.Body)
			if err != nil {
				t.Fatal(err)
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b), rec.Header()
	}
	var last map[*metric][]*segment
	for step, change := range []func(){
		func() {},
		func() {}, // nothing changed: every segment kept
		func() { snap.Listeners[700].AcceptQueue = 5 },
		func() { snap.Listeners[3].Processes[0].Comm = "other" },
		func() { snap.Listeners = slices.Delete(snap.Listeners, 10, 11) },
		func() {
			snap.Listeners = append(snap.Listeners, listener(1, "::1", 443, 99, 1, 10, 2, "new"))
			snap.Listeners[5].Drops = nil
		},
	} {
		change()
		zipped, hdr := scrape("gzip")
		if hdr.Get("Content-Encoding") != "gzip" {
			t.Fatal("not compressed")
		}
		plain, _ := scrape("identity")
		drop := func(s string) string { // differ from one collection to the next
			var keep []string
			for _, l := range strings.Split(s, "\n") {
				if !strings.HasPrefix(l, "backlog_scrape_duration_seconds ") && !strings.HasPrefix(l, "backlog_collections_total ") {
					keep = append(keep, l)
				}
			}
			return strings.Join(keep, "\n")
		}
		if drop(zipped) != drop(plain) {
			t.Fatalf("step %d: gzip text differs from plain:\n%s", step, lineDiff(drop(plain), drop(zipped)))
		}
		e.segs.mu.Lock() // the segments of the last gzip scrape
		segs := make(map[*metric][]*segment)
		for k, s := range e.segs.last {
			segs[k.m] = append(segs[k.m], s)
		}
		e.segs.mu.Unlock()
		if step == 1 {
			for m, ss := range segs {
				for _, s := range ss {
					if !slices.Contains(last[m], s) {
						t.Errorf("step %d: a segment of %s made again with nothing changed", step, m.name)
					}
				}
			}
		}
		if step == 2 {
			made := 0
			for m, ss := range segs {
				for _, s := range ss {
					if !slices.Contains(last[m], s) {
						made++
					}
				}
			}
			if made != 2 { // the queue and its peak
				t.Errorf("step %d: %d segments made for one value changed, want 2", step, made)
			}
		}
		last = segs
	}
}
