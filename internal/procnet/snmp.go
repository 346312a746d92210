package procnet

import (
	"bytes"
	"strconv"
)

// ParseSNMPCounter returns one counter of /proc/net/snmp or
// /proc/net/netstat, where each section is a line of names ("Tcp: RtoAlgorithm
// ... PassiveOpens ...") followed by a line of values in the same order.
// ok is false when the section or the name is missing, or the value is not
// an unsigned number.
func ParseSNMPCounter(b []byte, section, name string) (v uint64, ok bool) {
	prefix := []byte(section + ":")
	var names [][]byte
	for line := range bytes.Lines(b) {
		rest, found := bytes.CutPrefix(line, prefix)
		if !found {
			names = nil
			continue
		}
		if names == nil {
			names = bytes.Fields(rest)
			continue
		}
		for i, f := range bytes.Fields(rest) {
			if i < len(names) && string(names[i]) == name {
				v, err := strconv.ParseUint(string(f), 10, 64)
				return v, err == nil
			}
		}
		return 0, false
	}
	return 0, false
}
