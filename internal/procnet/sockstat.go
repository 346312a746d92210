package procnet

import (
	"bytes"
	"strconv"
)

// ParseSockstatInUse returns the "inuse" count of proto ("TCP", "TCP6")
// in /proc/net/sockstat or sockstat6: the sockets of that protocol hashed
// in the namespace (sock_prot_inuse_get()), listeners and connections, not
// TIME_WAIT or request sockets. ok is false when the line or field is
// missing or not a number.
func ParseSockstatInUse(b []byte, proto string) (n int, ok bool) {
	prefix := []byte(proto + ":")
	for line := range bytes.Lines(b) {
		rest, found := bytes.CutPrefix(line, prefix)
		if !found {
			continue
		}
		f := bytes.Fields(rest)
		for i := 0; i+1 < len(f); i += 2 {
			if string(f[i]) == "inuse" {
				v, err := strconv.Atoi(string(f[i+1]))
				return v, err == nil && v >= 0
			}
		}
		return 0, false
	}
	return 0, false
}
