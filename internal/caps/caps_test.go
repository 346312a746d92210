package caps

import "testing"

func TestParseStatus(t *testing.T) {
	s, err := ParseStatus("Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n")
	if err != nil || !s.Has(SysAdmin) || !s.Has(BPF) {
		t.Errorf("root set = %x, %v", s, err)
	}
	s, err = ParseStatus("CapEff:\t0000000000200000\n")
	if err != nil || !s.Has(SysAdmin) || s.Has(SysPtrace) {
		t.Errorf("SYS_ADMIN only = %x, %v", s, err)
	}
	if _, err := ParseStatus("Name: x\n"); err == nil {
		t.Error("missing CapEff accepted")
	}
	if _, err := ParseStatus("CapEff:\tzz\n"); err == nil {
		t.Error("bad CapEff accepted")
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add("CapEff:\t000001ffffffffff\n")
	f.Fuzz(func(t *testing.T, s string) { _, _ = ParseStatus(s) })
}
