//go:build !linux || !amd64

package trace

import (
	"context"
	"fmt"
	"runtime"
	"time"
)

var errPlatform = fmt.Errorf("%w: it needs Linux on amd64 (this is %s/%s)", ErrNotSupported, runtime.GOOS, runtime.GOARCH)

// Check reports that tracing needs Linux on amd64.
func Check() error { return errPlatform }

// Tracer is not available on this system.
type Tracer struct{}

// New reports that tracing needs Linux on amd64.
func New(Options) (*Tracer, error) { return nil, errPlatform }

// Programs is empty here.
func (t *Tracer) Programs() Programs { return "" }

// AckHook is empty here.
func (t *Tracer) AckHook() string { return "" }

// AcceptHook is empty here.
func (t *Tracer) AcceptHook() string { return "" }

// AcceptLimit is empty here.
func (t *Tracer) AcceptLimit() string { return "" }

// MemberHook is empty here.
func (t *Tracer) MemberHook() string { return "" }

// Missing is empty here.
func (t *Tracer) Missing() []MissingStage { return nil }

// Warnings is empty here.
func (t *Tracer) Warnings() []string { return nil }

// Run reports that tracing needs Linux on amd64.
func (t *Tracer) Run(context.Context, func(Event)) error { return errPlatform }

// RunUnix reports that tracing needs Linux on amd64.
func (t *Tracer) RunUnix(context.Context, func(UnixRefusal)) error { return errPlatform }

// Stats reports that tracing needs Linux on amd64.
func (t *Tracer) Stats() ([]ListenerStats, error) { return nil, errPlatform }

// Counters reports that tracing needs Linux on amd64.
func (t *Tracer) Counters() (Counters, error) { return Counters{}, errPlatform }

// Close does nothing here.
func (t *Tracer) Close() error { return nil }

// Monotonic returns the time since the process started: there is no
// kernel clock to match here.
func Monotonic() time.Duration { return time.Since(start) }

var start = time.Now()

// UnixHook is empty here.
func (t *Tracer) UnixHook() string { return "" }
