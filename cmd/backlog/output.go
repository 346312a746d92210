package main

import (
	"context"
	"fmt"
	"io"
	"sync"
)

// output is stdout when it is not a terminal: it keeps the first write
// error and cancels the command's context with it, so that a full disk or
// a reader that went away ends a long-running command at once and exits 1
// instead of 0 (`backlog version > /dev/full`).
type output struct {
	w      io.Writer
	cancel context.CancelCauseFunc

	mu  sync.Mutex
	err error
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.w.Write(p)
	if err != nil {
		o.err = fmt.Errorf("writing the output: %w", err)
		o.cancel(o.err)
		return n, o.err
	}
	return n, nil
}

// Err is the first write error, or nil.
func (o *output) Err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}
