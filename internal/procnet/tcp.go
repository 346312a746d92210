package procnet

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Listening is one LISTEN row of /proc/PID/net/tcp or tcp6.
type Listening struct {
	Port  uint16
	Inode uint32
}

// ReadListening reads the listening TCP sockets (IPv4 and IPv6) of the
// network namespace of process pid under procRoot. It needs no ptrace
// access to pid, unlike /proc/PID/ns/net and /proc/PID/fd: the kernel's
// proc_tgid_net_lookup() only asks that the process exist. That lets a
// caller refused those two still learn what the process's namespace holds.
func ReadListening(procRoot string, pid int) ([]Listening, error) {
	var all []Listening
	for _, name := range []string{"tcp", "tcp6"} {
		path := fmt.Sprintf("%s/%d/net/%s", procRoot, pid, name)
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) && name == "tcp6" {
			continue // IPv6 disabled
		}
		if err != nil {
			return nil, fmt.Errorf("procnet: %w", err)
		}
		ls, err := ParseListening(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("procnet: %s: %w", path, err)
		}
		all = append(all, ls...)
	}
	return all, nil
}

// stListen is TCP_LISTEN as /proc/net/tcp prints the st column
// (tcp4_seq_show()).
const stListen = "0A"

// ParseListening parses /proc/net/tcp or tcp6 text and returns its LISTEN
// rows: "sl local_address rem_address st ... uid timeout inode ...".
func ParseListening(r io.Reader) ([]Listening, error) {
	var out []Listening
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first {
			first = false // the header
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			return nil, fmt.Errorf("short line %q", sc.Text())
		}
		if f[3] != stListen {
			continue
		}
		i := strings.LastIndexByte(f[1], ':')
		if i < 0 {
			return nil, fmt.Errorf("bad local address %q", f[1])
		}
		port, err := strconv.ParseUint(f[1][i+1:], 16, 16)
		if err != nil {
			return nil, fmt.Errorf("bad local port %q", f[1])
		}
		ino, err := strconv.ParseUint(f[9], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("bad inode %q", f[9])
		}
		out = append(out, Listening{Port: uint16(port), Inode: uint32(ino)})
	}
	return out, sc.Err()
}
