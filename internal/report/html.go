package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"

	"github.com/backlog-dev/backlog/internal/doctor"
	"github.com/backlog-dev/backlog/internal/render"
)

// uPlot (MIT, vendored unchanged from npm, see uplot/README.md) draws the
// plots: 51 KB, no dependencies, made for long time series. Embedding it
// keeps the report one file that opens offline.
var (
	//go:embed uplot/uPlot.iife.min.js
	uplotJS string
	//go:embed uplot/uPlot.min.css
	uplotCSS string
	//go:embed page.js
	pageJS string
)

// UplotVersion is the vendored uPlot.
const UplotVersion = "1.6.32"

// WriteHTML writes the report as one self-contained page. Its Content
// Security Policy forbids any request, so it cannot reach a network even
// by mistake.
func WriteHTML(w io.Writer, r *Report) error {
	return page.Execute(w, struct {
		R      *Report
		JS     template.JS
		CSS    template.CSS
		PageJS template.JS
	}{r, template.JS(uplotJS), template.CSS(uplotCSS), template.JS(pageJS)})
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"when": func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") },
	"whenp": func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.Local().Format("15:04:05")
	},
	"secs":  func(s float64) string { return fmt.Sprintf("%.0f s", s) },
	"drops": func(p *uint64) string { return optU(p) },
	"ms": func(p *float64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%.1f ms", *p)
	},
	"events": func(m map[string]uint64) string {
		var parts []string
		for k, v := range m {
			parts = append(parts, fmt.Sprintf("%s %d", k, v))
		}
		if len(parts) == 0 {
			return "-"
		}
		return strings.Join(sorted(parts), ", ")
	},
	"procs":   render.Processes,
	"trouble": func(f doctor.Finding) bool { return doctor.Trouble([]doctor.Finding{f}) },
}).Parse(pageHTML))

const pageHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<meta name="generator" content="{{.R.Program}}">
<title>backlog report{{if .R.Host}} {{.R.Host}}{{end}} {{when .R.Since}}</title>
<style>{{.CSS}}</style>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; }
td, th { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.critical td:first-child { border-left: 4px solid #c00; }
tr.warning td:first-child { border-left: 4px solid #e90; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
.chart h3 { font-size: .95em; margin: .3em 0; font-weight: 600; }
.note { color: #666; }
</style>
<script>{{.JS}}</script>
</head>
<body>
<h1>backlog report{{if .R.Host}}: {{.R.Host}}{{end}}</h1>
<p>{{when .R.Since}} to {{when .R.Until}} ({{.R.Frames}} frames{{if .R.BPF}}, with eBPF{{end}}){{if .R.Program}}, recorded by {{.R.Program}}{{end}}.</p>
{{range .R.Damaged}}<p class="note">Skipped: {{.}}</p>{{end}}

<h2>Listeners that mattered</h2>
{{if .R.Listeners}}
<table id="summary">
<tr><th>listener</th><th>namespace</th><th>process</th><th>peak / backlog</th><th>full for</th><th>first full</th><th>max SYN queue</th><th>drops (packets)</th>{{if .R.BPF}}<th>eBPF events</th><th>accept wait p99</th>{{end}}</tr>
{{range .R.Listeners}}<tr><td><a href="#l-{{.Netns}}-{{.Inode}}">{{.Listener}}</a></td><td>{{.Namespace}}</td><td>{{procs .Processes}}</td>
<td class="n">{{.Summary.MaxPeak}} / {{.Summary.Backlog}}</td><td class="n">{{secs .Summary.SecondsFull}}</td><td>{{whenp .Summary.FirstFull}}</td>
<td class="n">{{.Summary.MaxSynQueue}}</td><td class="n">{{drops .Summary.Drops}}</td>{{if $.R.BPF}}<td>{{events .Summary.Events}}</td><td class="n">{{ms .Summary.AcceptWaitP99}}</td>{{end}}</tr>
{{end}}</table>
{{else}}<p>No listener overflowed, dropped or held half-open connections in this window.</p>{{end}}

<h2>Doctor's findings over the window</h2>
<table id="findings">
<tr><th>severity</th><th>rule</th><th>where</th><th>summary</th></tr>
{{range .R.Findings}}<tr class="{{.Severity}}"><td>{{.Severity}}</td><td>{{.Rule}}</td><td>{{.Namespace}} {{.Listener}}</td><td>{{.Summary}}</td></tr>
{{end}}</table>
{{if .R.Marks}}<p class="note">Shaded on the plots: the stretches where doctor finds a warning (orange) or worse (red).</p>{{end}}

<div id="plots"></div>

<script>const REPORT = {{.R}};</script>
<script>{{.PageJS}}</script>
</body>
</html>
`
