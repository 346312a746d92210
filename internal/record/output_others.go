//go:build !linux

package record

import (
	"errors"
	"runtime"
	"time"
)

// OutputOptions say where and how a recorder writes.
type OutputOptions struct {
	MaxSize int64
	MaxAge  time.Duration
	Keep    int
	Now     func() time.Time
}

// Output is where records go; recording needs Linux.
type Output struct{}

// OpenOutput fails: recording needs Linux.
func OpenOutput(string, OutputOptions) (*Output, error) {
	return nil, errors.New("recording is not supported on " + runtime.GOOS)
}

func (o *Output) Fresh() bool        { return false }
func (o *Output) Path() string       { return "" }
func (o *Output) Due() bool          { return false }
func (o *Output) Rotate() error      { return nil }
func (o *Output) Write([]byte) error { return nil }
func (o *Output) Close() error       { return nil }
