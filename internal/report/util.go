package report

import (
	"slices"
	"strconv"
)

func optU(p *uint64) string {
	if p == nil {
		return "-"
	}
	return strconv.FormatUint(*p, 10)
}

func sorted(s []string) []string { slices.Sort(s); return s }
