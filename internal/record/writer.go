package record

// Writer encodes frames onto an Output: a header at the start of every
// file, a key frame after it, deltas in between.
type Writer struct {
	Out    *Output
	Header Header
	enc    Encoder
}

// NewWriter returns a writer of frames to out, with a key frame every
// keyEvery frames (DefaultKeyEvery when zero).
func NewWriter(out *Output, h Header, keyEvery int) *Writer {
	return &Writer{Out: out, Header: h, enc: Encoder{KeyEvery: keyEvery}}
}

// Write appends one frame, rotating first when the file is due.
func (w *Writer) Write(f *Frame) error {
	if w.Out.Due() {
		if err := w.Out.Rotate(); err != nil {
			return err
		}
	}
	if w.Out.Fresh() {
		h, err := w.enc.Header(w.Header)
		if err != nil {
			return err
		}
		if err := w.Out.Write(h); err != nil {
			return err
		}
	}
	rec, err := w.enc.Frame(f)
	if err != nil {
		return err
	}
	return w.Out.Write(rec)
}

// Close closes the output.
func (w *Writer) Close() error { return w.Out.Close() }
