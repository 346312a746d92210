package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/lab/scenario"
	"github.com/backlog-dev/backlog/internal/testutil"
	"github.com/backlog-dev/backlog/internal/trace"
)

// startTrace runs `backlog trace` with args and env added, and returns once
// its programs are attached; stop ends it (SIGINT, by pid) and returns its
// standard output and the lines it wrote on stderr besides "tracing...".
func startTrace(t *testing.T, env []string, args ...string) (stop func() (stdout string, warnings []string)) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"trace"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	ready, done := make(chan struct{}, 1), make(chan struct{})
	var warnings []string
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "backlog: tracing") {
				ready <- struct{}{}
			} else {
				warnings = append(warnings, sc.Text())
			}
		}
		io.Copy(io.Discard, pipe)
	}()
	select {
	case <-ready:
	case <-done:
		cmd.Wait()
		t.Fatalf("trace %v did not start: %q", args, warnings)
	case <-time.After(2 * time.Minute):
		t.Fatalf("trace %v did not start in 2 minutes", args)
	}
	return func() (string, []string) {
		cmd.Process.Signal(syscall.SIGINT)
		<-done
		if err := cmd.Wait(); err != nil {
			t.Errorf("trace %v: %v: %q", args, err, warnings)
		}
		return out.String(), warnings
	}
}

// traceEvents parses the output of trace --json: the TCP events, and the
// summary line into summary.
func traceEvents(t *testing.T, out string, summary any) []trace.Event {
	t.Helper()
	var events []trace.Event
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(line, `{"summary"`) {
			if err := json.Unmarshal([]byte(line), summary); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if strings.Contains(line, `"stage":"unix-eagain"`) {
			continue // a UNIX refusal, of another test on a shared host
		}
		var e trace.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		events = append(events, e)
	}
	return events
}

// TestTraceWithoutFentry: trace kept off fentry (BACKLOG_TRACE_NO_FENTRY),
// as on a kernel that refuses BPF trampolines. With Linux 6.15's drop
// reason TCP_LISTEN_OVERFLOW (the CI host) kfree_skb catches the ack
// stage, event for event; without it (the kernel matrix's 5.10, 6.1 and
// 6.12) the stage cannot be seen and every output says so, never a count
// of 0: one line on stderr naming what the kernel lacks and the first
// versions that have it, n/a in the summary, missing_stages in JSON, and
// backlog_trace_stage_traced{stage="ack"} 0 with no ack series.
func TestTraceWithoutFentry(t *testing.T) {
	testutil.RequireRoot(t)
	if err := trace.Check(); err != nil {
		t.Skipf("eBPF unavailable: %v", err)
	}
	// The oracle: the kernel's own BTF names the drop reasons it has.
	btf, err := os.ReadFile("/sys/kernel/btf/vmlinux")
	if err != nil {
		t.Fatal(err)
	}
	reason := bytes.Contains(btf, []byte("SKB_DROP_REASON_TCP_LISTEN_OVERFLOW"))
	env := []string{trace.NoFentryEnv + "=1"}

	srv := startServeUnder(t, []string{"env", env[0]}, "--bpf")
	stopJSON := startTrace(t, env, "--json")
	stopText := startTrace(t, env)
	// Drops at the SYN (stage syn), then at the final ACK (stage ack).
	lab := func(args ...string) (*scenario.Result, map[trace.Stage]int64) {
		out, errOut, code := runIn(t, "", append([]string{"lab"}, append(args, "--json")...)...)
		var res scenario.Result
		if err := json.Unmarshal([]byte(out), &res); err != nil || code != 0 || len(res.Listeners) == 0 || res.Moved["ListenOverflows"] == 0 {
			t.Fatalf("lab %v: exit %d, %v, want overflows: %s%s", args, code, err, out, errOut)
		}
		return &res, map[trace.Stage]int64{}
	}
	syn, atSyn := lab("overflow", "--duration", "2s")
	ack, atAck := lab("abort", "--abort-on-overflow", "0")
	_, metrics := get(t, http.DefaultClient, "http://"+srv.addr+"/metrics")
	jsonOut, jsonWarn := stopJSON()
	textOut, textWarn := stopText()

	var summary struct {
		Summary struct {
			AckHook   string                `json:"ack_hook"`
			Missing   []trace.MissingStage  `json:"missing_stages"`
			Listeners []trace.ListenerStats `json:"listeners"`
		} `json:"summary"`
	}
	events := traceEvents(t, jsonOut, &summary)
	s := summary.Summary
	drops := map[*scenario.Result]map[trace.Stage]uint64{}
	for res, n := range map[*scenario.Result]map[trace.Stage]int64{syn: atSyn, ack: atAck} {
		l := res.Listeners[0]
		for _, e := range events {
			if e.Netns == l.Netns && e.Listener.Port() == l.Port && !e.Time.After(res.CountedAt) {
				n[e.Stage]++
			}
		}
		for _, ls := range s.Listeners {
			if ls.Netns == l.Netns && ls.Listener.Port() == l.Port {
				drops[res] = ls.Drops
			}
		}
		t.Logf("lab %s: events syn %d ack %d, ListenOverflows %d; summary %v", res.Scenario, n[trace.StageSyn], n[trace.StageAck], res.Moved["ListenOverflows"], drops[res])
	}
	t.Logf("drop reason TCP_LISTEN_OVERFLOW: %v; ack hook %q, missing %v", reason, s.AckHook, s.Missing)

	// That the counts equal the counters, hook by hook, is
	// TestLabWithTrace's to check (kfree_skb is the CI host's own hook);
	// here, which hook is used, and what is said.
	if reason {
		if s.AckHook != "kfree_skb" || len(s.Missing) != 0 || atAck[trace.StageAck] == 0 {
			t.Errorf("without fentry, with the drop reason: ack hook %q, missing %v, %d ack events; want kfree_skb, none, some", s.AckHook, s.Missing, atAck[trace.StageAck])
		}
		if !strings.Contains(metrics, `backlog_trace_stage_traced{stage="ack"} 1`) {
			t.Errorf("metrics lack backlog_trace_stage_traced{stage=\"ack\"} 1")
		}
		return
	}

	// JSON: the stage is listed as missing, with the reason; no ack
	// event, and no ack count, not even 0, beside the syn drops that
	// are seen.
	if s.AckHook != "" || len(s.Missing) != 1 || s.Missing[0].Stage != trace.StageAck || !names(s.Missing[0].Reason) {
		t.Errorf("ack hook %q, missing stages %+v; want none, and ack missing with what the kernel lacks", s.AckHook, s.Missing)
	}
	if atSyn[trace.StageSyn] == 0 || drops[syn][trace.StageSyn] == 0 {
		t.Errorf("lab overflow: %d syn events, summary %v; want its syn drops", atSyn[trace.StageSyn], drops[syn])
	}
	for _, res := range []*scenario.Result{syn, ack} {
		if _, ok := drops[res][trace.StageAck]; ok || atSyn[trace.StageAck]+atAck[trace.StageAck] != 0 {
			t.Errorf("lab %s: an ack count where the stage is not traced: %v", res.Scenario, drops[res])
		}
	}
	// stderr: that one line, from each trace.
	for _, w := range [][]string{jsonWarn, textWarn} {
		said := 0
		for _, line := range w {
			if strings.Contains(line, "stage ack") {
				said++
				if !names(line) || !strings.HasPrefix(line, "backlog: ") {
					t.Errorf("the warning does not name what is missing: %q", line)
				}
			}
		}
		if said != 1 {
			t.Errorf("stderr %q: want one line saying the ack stage is not traced", w)
		}
	}
	// Text: n/a in the ack column of the overflow's row, and the sentence why.
	port := fmt.Sprintf(":%d ", syn.Listeners[0].Port)
	row := ""
	for _, line := range strings.Split(textOut, "\n") {
		if strings.Contains(line, port) {
			row = line
		}
	}
	if !strings.Contains(row, "n/a") || !strings.Contains(textOut, "Stage ack is not traced on this kernel (n/a)") {
		t.Errorf("the text summary does not say n/a (row %q):\n%s", row, textOut)
	}
	// Metrics: traced 0, and no ack series beside the others.
	if !strings.Contains(metrics, `backlog_trace_stage_traced{stage="ack"} 0`) {
		t.Errorf("metrics lack backlog_trace_stage_traced{stage=\"ack\"} 0")
	}
	series := 0
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "backlog_listener_drop_events_total{") {
			series++
			if strings.Contains(line, `stage="ack"`) {
				t.Errorf("an ack series where the stage is not traced: %s", line)
			}
		}
	}
	t.Logf("%d drop-event series, none for stage ack", series)
	if log := srv.stderr(); strings.Count(log, "stage ack") != 1 || !names(log) {
		t.Errorf("serve's log should say once what the kernel lacks:\n%s", log)
	}
}

// names: the line names the missing kernel features and the first
// versions that have them.
func names(s string) bool {
	return strings.Contains(s, "BPF trampolines") && strings.Contains(s, "Linux 5.5") &&
		strings.Contains(s, "TCP_LISTEN_OVERFLOW") && strings.Contains(s, "6.15")
}
