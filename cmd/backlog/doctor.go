package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"
	"time"

	"github.com/backlog-dev/backlog/internal/doctor"
	"github.com/backlog-dev/backlog/internal/render"
	"github.com/backlog-dev/backlog/internal/trace"
)

// exitTrouble is doctor's exit code when it finds a warning or worse.
const exitTrouble = 3

// troubleError makes run() exit 3 without printing anything more.
type troubleError struct{}

func (troubleError) Error() string { return "trouble found" }

func runDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("doctor", stdout)
	duration := fs.Duration("duration", 10*time.Second, "how long to watch before answering")
	asJSON := fs.Bool("json", false, "print the findings as JSON")
	bpf := fs.Bool("bpf", false, "also trace with eBPF during the window: drops by stage and accept-queue waits as evidence (docs/trace.md)")
	var filters filterFlags
	filters.register(fs)
	var rf replayFlags
	rf.register(fs, "from", "judge this recording (backlog record) instead of watching live")
	if err := parse(fs, args); err != nil {
		return err
	}
	if rf.path != "" || rf.since != "" || rf.until != "" {
		if *bpf {
			return usageError{errors.New("backlog doctor: --bpf traces live; a recording made with record --bpf carries its trace already")}
		}
		src, err := rf.source(&filters, stderr)
		if err != nil {
			return err
		}
		obs, dmg, err := src.Observe()
		reportDamage(stderr, dmg)
		if err != nil {
			return err
		}
		return answer(stdout, stderr, obs, "", *asJSON, obs.Duration)
	}
	if *duration < time.Second || *duration > 10*time.Minute {
		return usageError{errors.New("backlog doctor: --duration must be between 1s and 10m")}
	}
	opts, warning, err := filters.options()
	if err != nil {
		return err
	}
	for _, a := range filters.absent() {
		fmt.Fprintf(stderr, "backlog: %s\n", a)
	}
	var (
		traced    func() ([]trace.ListenerStats, error)
		refused   map[doctor.UnixName]uint64
		refusedMu sync.Mutex
	)
	var traceWarnings []string
	if *bpf {
		refused = map[doctor.UnixName]uint64{}
		if err := trace.Check(); err != nil {
			return fmt.Errorf("--bpf: %w", err)
		}
		tr, err := trace.New(traceOptions(&filters, opts))
		if err != nil {
			return fmt.Errorf("--bpf: %w", err)
		}
		defer tr.Close()
		tctx, stop := context.WithCancel(ctx)
		defer stop()
		go tr.Run(tctx, nil)
		go tr.RunUnix(tctx, func(u trace.UnixRefusal) {
			refusedMu.Lock()
			refused[doctor.UnixName{Netns: u.Netns, Path: u.Path}]++
			refusedMu.Unlock()
		})
		traced = tr.Stats
		traceWarnings = tr.Warnings()
	}
	if !*asJSON {
		fmt.Fprintf(stderr, "backlog: watching for %v...\n", *duration)
	}
	obs, err := doctor.Observe(ctx, opts, *duration, traced)
	if err != nil {
		return err
	}
	if refused != nil {
		time.Sleep(200 * time.Millisecond) // what the ring buffer still holds
		refusedMu.Lock()
		obs.UnixRefused = maps.Clone(refused)
		refusedMu.Unlock()
	}
	// The tracer saw only part of the window too; its counts stand.
	obs.Last.Warnings = append(traceWarnings, obs.Last.Warnings...)
	return answer(stdout, stderr, obs, warning, *asJSON, *duration)
}

// answer prints the findings of an observation and returns the error that
// gives doctor's exit code.
func answer(stdout, stderr io.Writer, obs doctor.Observation, warning string, asJSON bool, window time.Duration) error {
	var err error
	if warning != "" {
		obs.Last.Warnings = append([]string{warning}, obs.Last.Warnings...)
	}
	report(stderr, obs.Last)
	findings := doctor.Diagnose(obs)
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		// since and until are the window's first and last snapshot:
		// doctor --from over a recording of the same time judges the
		// same window.
		until := obs.Last.TakenAt
		err = enc.Encode(struct {
			Duration    float64          `json:"duration_seconds"`
			Since       time.Time        `json:"since"`
			Until       time.Time        `json:"until"`
			Interrupted bool             `json:"interrupted"`
			Findings    []doctor.Finding `json:"findings"`
		}{obs.Duration.Seconds(), until.Add(-obs.Duration), until, obs.Interrupted, findings})
	} else {
		err = render.Findings(stdout, findings)
	}
	if err != nil {
		return err
	}
	if obs.Interrupted {
		fmt.Fprintf(stderr, "backlog: doctor was interrupted after %v of its %v window; the findings above are what that part showed\n",
			obs.Duration.Round(time.Millisecond), window)
	}
	if doctor.Trouble(findings) {
		return troubleError{}
	}
	if obs.Interrupted {
		return errInterrupted // no trouble in part of a window is no verdict
	}
	return nil
}
