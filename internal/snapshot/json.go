package snapshot

import (
	"encoding/json"
	"io"
	"net/netip"
	"strconv"
)

// EncodeJSON writes s as json.NewEncoder(w).Encode(s) does, byte for byte
// (TestEncodeJSON), writing the listeners without reflection and in 64 KiB
// pieces: at 10,000 listeners encoding/json took a tenth of `backlog ls
// --json`, and the 2 MB it built, each page of it a fresh page fault,
// about as much again.
func (s *Snapshot) EncodeJSON(w io.Writer) error {
	head, err := json.Marshal(struct {
		TakenAt    any `json:"taken_at"`
		Namespaces any `json:"namespaces"`
	}{s.TakenAt, s.Namespaces})
	if err != nil {
		return err
	}
	const flushAt = 60 << 10
	b := make([]byte, 0, flushAt+4<<10)
	b = append(b, head[:len(head)-1]...) // without its "}"
	b = append(b, `,"listeners":`...)
	if s.Listeners == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range s.Listeners {
			if i > 0 {
				b = append(b, ',')
			}
			b = s.Listeners[i].AppendJSON(b)
			if len(b) >= flushAt {
				if _, err := w.Write(b); err != nil {
					return err
				}
				b = b[:0]
			}
		}
		b = append(b, ']')
	}
	tail, err := json.Marshal(struct {
		Node     string   `json:"node,omitempty"`
		Source   string   `json:"source,omitempty"`
		Warnings []string `json:"warnings,omitempty"`
		Hidden   []Hidden `json:"hidden,omitempty"`
	}{s.Node, s.Source, s.Warnings, s.Hidden})
	if err != nil {
		return err
	}
	if len(tail) > 2 { // not "{}"
		b = append(append(b, ','), tail[1:]...)
	} else {
		b = append(b, '}')
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// AppendJSON appends l as encoding/json marshals it, byte for byte.
// TestListenerAppendJSON sets each field in turn, so a field added to
// Listener and forgotten here fails it.
func (l *Listener) AppendJSON(b []byte) []byte {
	b = strconv.AppendUint(append(b, `{"netns":`...), l.Netns, 10)
	b = appendString(append(b, `,"family":`...), l.Family)
	if l.Address != (netip.Addr{}) {
		b = appendString(append(b, `,"address":`...), l.Address.String())
	}
	if l.Port != 0 {
		b = strconv.AppendUint(append(b, `,"port":`...), uint64(l.Port), 10)
	}
	if l.Path != "" {
		b = appendString(append(b, `,"path":`...), l.Path)
	}
	if l.Type != "" {
		b = appendString(append(b, `,"type":`...), l.Type)
	}
	if l.VFS != nil {
		b = strconv.AppendUint(append(b, `,"vfs":{"dev":`...), uint64(l.VFS.Dev), 10)
		b = append(strconv.AppendUint(append(b, `,"inode":`...), uint64(l.VFS.Inode), 10), '}')
	}
	b = strconv.AppendUint(append(b, `,"inode":`...), uint64(l.Inode), 10)
	if l.UID != nil {
		b = strconv.AppendUint(append(b, `,"uid":`...), uint64(*l.UID), 10)
	}
	b = strconv.AppendUint(append(b, `,"accept_queue":`...), uint64(l.AcceptQueue), 10)
	b = strconv.AppendUint(append(b, `,"backlog":`...), uint64(l.Backlog), 10)
	if l.SynQueue != nil {
		b = strconv.AppendUint(append(b, `,"syn_queue":`...), uint64(*l.SynQueue), 10)
	}
	if l.GroupSynQueue != nil {
		b = strconv.AppendUint(append(b, `,"group_syn_queue":`...), uint64(*l.GroupSynQueue), 10)
	}
	if l.FastOpenQueue != 0 {
		b = strconv.AppendUint(append(b, `,"fast_open_queue":`...), uint64(l.FastOpenQueue), 10)
	}
	if l.Drops != nil {
		b = strconv.AppendUint(append(b, `,"drops":`...), *l.Drops, 10)
	}
	if l.V6Only != nil {
		b = strconv.AppendBool(append(b, `,"v6only":`...), *l.V6Only)
	}
	b = append(b, `,"processes":`...)
	if l.Processes == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, p := range l.Processes {
			if i > 0 {
				b = append(b, ',')
			}
			b = p.appendJSON(b)
		}
		b = append(b, ']')
	}
	if w := l.Workload; w != nil {
		b = append(b, `,"workload":`...)
		b = w.appendJSON(b)
	}
	return append(b, '}')
}

func (p *Process) appendJSON(b []byte) []byte {
	b = strconv.AppendInt(append(b, `{"pid":`...), int64(p.PID), 10)
	b = appendString(append(b, `,"comm":`...), p.Comm)
	if p.State != "" {
		b = appendString(append(b, `,"state":`...), p.State)
	}
	if p.PPID != 0 {
		b = strconv.AppendInt(append(b, `,"ppid":`...), int64(p.PPID), 10)
	}
	if p.Role != "" {
		b = appendString(append(b, `,"role":`...), p.Role)
	}
	if p.Serving {
		b = append(b, `,"serving":true`...)
	}
	return append(b, '}')
}

func (w *Workload) appendJSON(b []byte) []byte {
	b = append(b, '{')
	for _, f := range [...]struct{ key, v string }{
		{`"namespace":`, w.Namespace}, {`"pod":`, w.Pod}, {`"pod_uid":`, w.PodUID},
		{`"container":`, w.Container}, {`"container_id":`, w.ContainerID},
		{`"runtime":`, w.Runtime}, {`"node":`, w.Node},
	} {
		if f.v == "" {
			continue
		}
		if b[len(b)-1] != '{' {
			b = append(b, ',')
		}
		b = appendString(append(b, f.key...), f.v)
	}
	return append(b, '}')
}

// appendString quotes s as encoding/json does: plain printable ASCII
// directly, anything it would escape (quotes, backslashes, <, >, &,
// control characters, non-ASCII) through encoding/json itself.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
