package netns

import "errors"

// ErrGone is a namespace that went away (deleted, or its last process
// exited) between being named and being entered: a normal event while
// namespaces come and go, not a failure of the caller.
var ErrGone = errors.New("the namespace went away (deleted, or its last process exited)")
