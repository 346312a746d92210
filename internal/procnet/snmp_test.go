package procnet

import "testing"

const snmp = `Ip: Forwarding DefaultTTL
Ip: 1 64
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails
Tcp: 1 200 120000 -1 1234 5678 9
Udp: InDatagrams
Udp: 3
`

func TestParseSNMPCounter(t *testing.T) {
	for _, c := range []struct {
		section, name string
		want          uint64
	}{{"Tcp", "PassiveOpens", 5678}, {"Tcp", "ActiveOpens", 1234}, {"Ip", "DefaultTTL", 64}, {"Udp", "InDatagrams", 3}} {
		if v, ok := ParseSNMPCounter([]byte(snmp), c.section, c.name); !ok || v != c.want {
			t.Errorf("%s %s: %d %v, want %d", c.section, c.name, v, ok, c.want)
		}
	}
	for _, c := range []struct{ in, section, name string }{
		{snmp, "Tcp", "MaxConn"},     // -1: not a counter
		{snmp, "Tcp", "Nothing"},     // no such name
		{snmp, "TcpExt", "Anything"}, // no such section
		{"Tcp: PassiveOpens\n", "Tcp", "PassiveOpens"},
		{"Tcp: PassiveOpens\nIp: 3\n", "Tcp", "PassiveOpens"},
		{"Tcp: A PassiveOpens\nTcp: 1\n", "Tcp", "PassiveOpens"},
		{"", "Tcp", "PassiveOpens"},
	} {
		if v, ok := ParseSNMPCounter([]byte(c.in), c.section, c.name); ok {
			t.Errorf("%q %s %s: %d accepted", c.in, c.section, c.name, v)
		}
	}
}

func FuzzParseSNMPCounter(f *testing.F) {
	f.Add([]byte(snmp), "Tcp", "PassiveOpens")
	f.Add([]byte("Tcp: A\nTcp: x\n"), "Tcp", "A")
	f.Fuzz(func(t *testing.T, b []byte, section, name string) {
		ParseSNMPCounter(b, section, name) // no panic, whatever the input
	})
}
