// Package scenario reproduces behaviours of the Linux listen path in private
// network namespaces, measures them with the collectors `backlog ls` uses,
// and checks the numbers against what the kernel's rules predict.
package scenario

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

// ErrNeedRoot means the lab cannot build namespaces.
var ErrNeedRoot = errors.New("lab needs root (or CAP_SYS_ADMIN and CAP_NET_ADMIN): it builds private network namespaces")

// Names of the scenarios, in the order `backlog lab` lists them.
var Names = []string{"nobind", "capped", "overflow", "synflood", "abort", "unix-overflow", "reuseport"}

// Hard caps: a scenario is bounded whatever its flags say.
const (
	MaxClients  = 1000
	MaxDuration = 60 * time.Second
	MaxBacklog  = 1 << 20
)

// Params tune a scenario; a zero field takes the scenario's default.
type Params struct {
	Backlog       int           `json:"backlog"`           // listen(2) backlog
	Clients       int           `json:"clients"`           // connecting clients
	AcceptRate    float64       `json:"accept_rate"`       // accepts per second by the server; 0: never
	Duration      time.Duration `json:"duration_ns"`       // how long to drive it
	Syncookies    int           `json:"syncookies"`        // net.ipv4.tcp_syncookies of the server (synflood)
	MaxSynBacklog int           `json:"max_syn_backlog"`   // net.ipv4.tcp_max_syn_backlog, 0 = leave (synflood)
	Somaxconn     int           `json:"somaxconn"`         // somaxconn raised to this (capped), set to this (unix-overflow)
	Abort         int           `json:"abort_on_overflow"` // net.ipv4.tcp_abort_on_overflow (abort)

	abortSet   bool     // Abort was given, even as 0
	backlogSet bool     // Backlog was given, even as 0: listen(fd, 0)
	uses       []string // the flags the scenario applies (Uses), set by withDefaults
}

// uses names, by the flags of `backlog lab`, the parameters each scenario
// applies; the others would be accepted and silently ignored.
var uses = map[string][]string{
	"nobind":        {"backlog"},
	"capped":        {"backlog", "somaxconn"},
	"overflow":      {"backlog", "clients", "accept-rate", "duration"},
	"synflood":      {"backlog", "clients", "duration", "syncookies", "max-syn-backlog"},
	"abort":         {"backlog", "duration", "abort-on-overflow"},
	"unix-overflow": {"backlog", "clients", "somaxconn"},
	"reuseport":     {"backlog", "clients", "duration"},
}

// Uses returns the flags scenario name applies.
func Uses(name string) []string { return uses[name] }

// SetBacklog sets Backlog and records that it was chosen, so that 0 is
// listen(fd, 0), a real case, not "use the default".
func (p *Params) SetBacklog(v int) { p.Backlog, p.backlogSet = v, true }

// MarshalJSON writes the parameters the scenario applied, and only those
// (all of them for Params no scenario has filled).
func (p Params) MarshalJSON() ([]byte, error) {
	type all Params
	if p.uses == nil {
		return json.Marshal(all(p))
	}
	var out struct {
		Backlog       *int           `json:"backlog,omitempty"`
		Clients       *int           `json:"clients,omitempty"`
		AcceptRate    *float64       `json:"accept_rate,omitempty"`
		Duration      *time.Duration `json:"duration_ns,omitempty"`
		Syncookies    *int           `json:"syncookies,omitempty"`
		MaxSynBacklog *int           `json:"max_syn_backlog,omitempty"`
		Somaxconn     *int           `json:"somaxconn,omitempty"`
		Abort         *int           `json:"abort_on_overflow,omitempty"`
	}
	for _, u := range p.uses {
		switch u {
		case "backlog":
			out.Backlog = &p.Backlog
		case "clients":
			out.Clients = &p.Clients
		case "accept-rate":
			out.AcceptRate = &p.AcceptRate
		case "duration":
			out.Duration = &p.Duration
		case "syncookies":
			out.Syncookies = &p.Syncookies
		case "max-syn-backlog":
			out.MaxSynBacklog = &p.MaxSynBacklog
		case "somaxconn":
			out.Somaxconn = &p.Somaxconn
		case "abort-on-overflow":
			out.Abort = &p.Abort
		}
	}
	return json.Marshal(out)
}

// SetAbort sets Abort and records that it was chosen, so that 0 is not
// taken for "use the default".
func (p *Params) SetAbort(v int) { p.Abort, p.abortSet = v, true }

// Validate checks the bounds every scenario shares.
func (p Params) Validate() error {
	switch {
	case p.Backlog < 0 || p.Backlog > MaxBacklog:
		return fmt.Errorf("backlog %d outside 0..%d", p.Backlog, MaxBacklog)
	case p.Clients < 0 || p.Clients > MaxClients:
		return fmt.Errorf("clients %d outside 0..%d", p.Clients, MaxClients)
	case p.Duration < 0 || p.Duration > MaxDuration:
		return fmt.Errorf("duration %v outside 0..%v", p.Duration, MaxDuration)
	case p.AcceptRate < 0 || p.AcceptRate > 10000:
		return fmt.Errorf("accept rate %v outside 0..10000 per second", p.AcceptRate)
	case p.Syncookies < 0 || p.Syncookies > 2:
		return fmt.Errorf("syncookies %d: want 0, 1 or 2", p.Syncookies)
	case p.Abort < 0 || p.Abort > 1:
		return fmt.Errorf("abort %d: want 0 or 1", p.Abort)
	case p.MaxSynBacklog < 0 || p.Somaxconn < 0:
		return fmt.Errorf("sysctl values must not be negative")
	}
	return nil
}

// Known reports whether name is a scenario.
func Known(name string) bool { return slices.Contains(Names, name) }

// Result is what a scenario showed. Its JSON is `backlog lab --json`.
type Result struct {
	Scenario    string `json:"scenario"`
	Explanation string `json:"explanation"`
	Params      Params `json:"params"`
	// Namespace is the server's namespace name (removed by the time the
	// result is printed).
	Namespace string `json:"namespace"`
	// Listeners are the scenario's listeners as the collector saw them at
	// the end.
	Listeners []snapshot.Listener `json:"listeners"`
	// Moved is how much each TcpExt counter of the server's namespace
	// moved during the scenario.
	Moved map[string]int64 `json:"moved"`
	// Moved was the namespace's count at a moment between CountedFrom and
	// CountedAt: events traced before CountedFrom are all in it, events
	// traced after CountedAt none. They are the same moment when the
	// counters stood still between two reads around it (the usual case);
	// a span when handshakes were still being retried at every read.
	CountedFrom time.Time `json:"counted_from"`
	CountedAt   time.Time `json:"counted_at"`
	// Observed are the scenario's own measurements (peak accept queue,
	// client states, port range...).
	Observed map[string]int64 `json:"observed"`
	Checks   []Check          `json:"checks"`
}

// Check compares a measurement with what the kernel's rules predict.
type Check struct {
	Rule string `json:"rule"`
	Op   string `json:"op"` // "=", ">", ">=", "<="
	Want int64  `json:"want"`
	Got  int64  `json:"got"`
	OK   bool   `json:"ok"`
}

func (r *Result) check(rule, op string, got, want int64) {
	var ok bool
	switch op {
	case "=":
		ok = got == want
	case ">":
		ok = got > want
	case ">=":
		ok = got >= want
	case "<=":
		ok = got <= want
	}
	r.Checks = append(r.Checks, Check{Rule: rule, Op: op, Want: want, Got: got, OK: ok})
}

// OK reports whether every prediction held.
func (r *Result) OK() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return true
}

func (r *Result) moved(name string) int64 { return r.Moved[name] }
