package lab

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ClientStats is what the clients' own sockets say (TCP_INFO, SO_ERROR).
type ClientStats struct {
	States     map[string]int // "ESTABLISHED", "SYN-SENT", "CLOSE", ...
	Retransmit int            // sum of tcpi_total_retrans: SYNs and data sent again
	Resets     int            // sockets whose pending error is ECONNRESET
	Refused    int            // ... ECONNREFUSED (RST answering a SYN)
}

// tcpStates names tcpi_state values (include/net/tcp_states.h).
var tcpStates = map[uint8]string{
	1: "ESTABLISHED", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2",
	6: "TIME-WAIT", 7: "CLOSE", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN", 11: "CLOSING",
}

// Stats reads every client's state. Reading SO_ERROR clears it, so a
// reset is counted once, by the first Stats after it.
func (c *Clients) Stats() ClientStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := ClientStats{States: make(map[string]int)}
	if c.closed {
		return st
	}
	for _, fd := range c.fds {
		if ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			st.States[tcpStates[ti.State]]++
			st.Retransmit += int(ti.Total_retrans)
		}
		if e, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err == nil {
			switch syscall.Errno(e) {
			case unix.ECONNRESET:
				st.Resets++
			case unix.ECONNREFUSED:
				st.Refused++
			}
		}
	}
	return st
}

// Send writes b once on every client whose handshake completed from its
// side, and returns how many writes went out.
func (c *Clients) Send(b []byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0
	}
	n := 0
	for _, fd := range c.fds {
		if _, err := unix.Write(fd, b); err == nil {
			n++
		}
	}
	return n
}

// RemoveStale deletes namespaces named prefix...-PID-N under /run/netns
// (as NewNamespace names them) whose creating process no longer exists:
// what a crashed run left. It returns the names it removed.
func RemoveStale(prefix string) ([]string, error) {
	entries, err := os.ReadDir(runDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix+"-") {
			continue
		}
		f := strings.Split(e.Name(), "-")
		pid, err := strconv.Atoi(f[len(f)-2])
		if len(f) < 3 || err != nil || pid == os.Getpid() {
			continue
		}
		if err := unix.Kill(pid, 0); err == nil || errors.Is(err, unix.EPERM) {
			continue // its creator is alive
		}
		ns := &Namespace{Name: e.Name(), Path: filepath.Join(runDir, e.Name())}
		if err := ns.remove(); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, e.Name())
	}
	return removed, errors.Join(errs...)
}
