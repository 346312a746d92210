package report

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"

	"github.com/backlog-dev/backlog/internal/exporter"
	"github.com/backlog-dev/backlog/internal/record"
	"github.com/backlog-dev/backlog/internal/replay"
)

// WriteOpenMetrics writes every frame of the window as OpenMetrics text
// with timestamps, the series `backlog serve` (and serve --bpf) would have
// exported at that moment: `promtool tsdb create-blocks-from openmetrics`
// turns it into blocks for Prometheus. OpenMetrics wants each family's
// samples together, so they are spooled to one temporary file per family
// and joined at the end: memory stays bounded by one frame.
func WriteOpenMetrics(w io.Writer, src replay.Source, tmpdir string) ([]record.Damage, error) {
	spools := map[string]*spool{}
	defer func() {
		for _, s := range spools {
			s.f.Close()
			os.Remove(s.f.Name())
		}
	}()
	frames := 0
	dmg, err := src.Frames(func(f *record.Frame) error {
		frames++
		ts := strconv.FormatFloat(float64(f.Snapshot.TakenAt.UnixMilli())/1000, 'f', -1, 64)
		fams := exporter.Families(f.Snapshot, f.Peaks)
		if f.Trace != nil {
			tf, err := exporter.TraceFamilies(f.Trace)
			if err != nil {
				return fmt.Errorf("trace metrics: %w", err)
			}
			fams = append(fams, tf...)
		}
		for _, fam := range fams {
			s := spools[fam.GetName()]
			if s == nil {
				var err error
				if s, err = newSpool(tmpdir, fam); err != nil {
					return err
				}
				spools[fam.GetName()] = s
			}
			if err := s.write(fam, ts); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return dmg, err
	}
	if frames == 0 {
		return dmg, replay.ErrEmpty
	}
	names := make([]string, 0, len(spools))
	for n := range spools {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		s := spools[n]
		if err := s.w.Flush(); err != nil {
			return dmg, err
		}
		if _, err := s.f.Seek(0, io.SeekStart); err != nil {
			return dmg, err
		}
		if _, err := io.Copy(w, s.f); err != nil {
			return dmg, err
		}
	}
	_, err = io.WriteString(w, "# EOF\n")
	return dmg, err
}

type spool struct {
	f *os.File
	w *bufio.Writer
}

func newSpool(dir string, fam *dto.MetricFamily) (*spool, error) {
	f, err := os.CreateTemp(dir, "backlog-openmetrics-*")
	if err != nil {
		return nil, fmt.Errorf("spooling OpenMetrics: %w", err)
	}
	s := &spool{f: f, w: bufio.NewWriter(f)}
	name, typ := fam.GetName(), "gauge"
	switch fam.GetType() {
	case dto.MetricType_COUNTER:
		// OpenMetrics names a counter family without its _total.
		name, typ = strings.TrimSuffix(name, "_total"), "counter"
	case dto.MetricType_HISTOGRAM:
		typ = "histogram"
	}
	fmt.Fprintf(s.w, "# TYPE %s %s\n# HELP %s %s\n", name, typ, name, escape(fam.GetHelp(), false))
	return s, nil
}

// write appends the family's samples at timestamp ts (seconds).
func (s *spool) write(fam *dto.MetricFamily, ts string) error {
	name := fam.GetName()
	for _, m := range fam.GetMetric() {
		labels := labelText(m.GetLabel(), "", "")
		switch fam.GetType() {
		case dto.MetricType_COUNTER:
			s.sample(name, labels, m.GetCounter().GetValue(), ts)
		case dto.MetricType_GAUGE:
			s.sample(name, labels, m.GetGauge().GetValue(), ts)
		case dto.MetricType_HISTOGRAM:
			h := m.GetHistogram()
			bs := slices.Clone(h.GetBucket())
			slices.SortFunc(bs, func(a, b *dto.Bucket) int { return cmp.Compare(a.GetUpperBound(), b.GetUpperBound()) })
			for _, b := range bs {
				s.sample(name+"_bucket", labelText(m.GetLabel(), "le", strconv.FormatFloat(b.GetUpperBound(), 'f', -1, 64)), float64(b.GetCumulativeCount()), ts)
			}
			s.sample(name+"_bucket", labelText(m.GetLabel(), "le", "+Inf"), float64(h.GetSampleCount()), ts)
			s.sample(name+"_count", labels, float64(h.GetSampleCount()), ts)
			s.sample(name+"_sum", labels, h.GetSampleSum(), ts)
		}
	}
	return nil
}

func (s *spool) sample(name, labels string, v float64, ts string) {
	s.w.WriteString(name)
	s.w.WriteString(labels)
	s.w.WriteByte(' ')
	s.w.WriteString(formatValue(v))
	s.w.WriteByte(' ')
	s.w.WriteString(ts)
	s.w.WriteByte('\n')
}

func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// labelText renders {a="x",...}, leaving out empty values (Prometheus
// reads them as absent) and adding one extra label when given.
func labelText(ls []*dto.LabelPair, extra, extraValue string) string {
	var b strings.Builder
	for _, l := range ls {
		if l.GetValue() == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.GetName())
		b.WriteString(`="`)
		b.WriteString(escape(l.GetValue(), true))
		b.WriteByte('"')
	}
	if extra != "" {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(extra + `="` + extraValue + `"`)
	}
	if b.Len() == 0 {
		return ""
	}
	return "{" + b.String() + "}"
}

// escape escapes a label value (or HELP text) as OpenMetrics wants.
func escape(s string, quote bool) string {
	r := strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	if quote {
		r = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
	}
	return r.Replace(s)
}
