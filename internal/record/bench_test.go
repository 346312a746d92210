package record

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

// BenchmarkRecord1000 encodes frames of 1,000 listeners at one frame a
// second, with a share of them changing every frame (accept queue and
// drops), and reports the size per listener per hour and the time per
// frame (docs/performance.md).
func BenchmarkRecord1000(b *testing.B) {
	for _, busy := range []int{0, 10, 100} {
		b.Run(fmt.Sprintf("busy=%d%%", busy), func(b *testing.B) {
			const n = 1000
			t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
			s := &snapshot.Snapshot{Namespaces: []snapshot.Namespace{{Inode: 1, Name: "host",
				Sysctls:  snapshot.Sysctls{Somaxconn: i64(4096), TCPMaxSynBacklog: i64(2048), TCPSyncookies: i64(1), TCPAbortOnOverflow: i64(0), TCPSynackRetries: i64(5)},
				Counters: snapshot.Counters{ListenOverflows: u64(0), ListenDrops: u64(0), TCPReqQFullDrop: u64(0), TCPReqQFullDoCookies: u64(0), SyncookiesSent: u64(0), SyncookiesRecv: u64(0), SyncookiesFailed: u64(0)}}}}
			for i := range n {
				s.Listeners = append(s.Listeners, snapshot.Listener{Netns: 1, Family: "inet", Address: netip.MustParseAddr("10.0.0.1"),
					Port: uint16(10000 + i), Inode: uint32(500000 + i), Backlog: 4096, Drops: u64(0),
					Processes: []snapshot.Process{{PID: 1000 + i/10, Comm: "server"}}})
			}
			var e Encoder
			total, frames := 0, 0
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				s.TakenAt = t0.Add(time.Duration(i) * time.Second)
				changed := n * busy / 100
				for j := range changed {
					l := &s.Listeners[(i*7+j)%n]
					l.AcceptQueue = uint32(i % 50)
					*l.Drops += uint64(i % 3)
				}
				peaks := map[snapshot.ListenerKey]uint32{}
				r, err := e.Frame(&Frame{Snapshot: s, Peaks: peaks})
				if err != nil {
					b.Fatal(err)
				}
				total += len(r)
				frames++
			}
			// Bytes per listener per hour at one frame a second.
			b.ReportMetric(float64(total)/float64(frames)*3600/n, "B/listener/h")
		})
	}
}
