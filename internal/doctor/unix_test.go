package doctor

import (
	"strings"
	"testing"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

func unixListener(path string, aq, backlog uint32, comm string) snapshot.Listener {
	return snapshot.Listener{Family: snapshot.FamilyUnix, Path: path, Type: snapshot.TypeStream,
		AcceptQueue: aq, Backlog: backlog, Processes: []snapshot.Process{{PID: 900, Comm: comm}}}
}

// TestUnixFullAdvisesTheOwnersKnob: a full UNIX accept queue is found from
// the queue alone (the kernel counts no refused connect), and the advice
// names the owning server's own setting.
func TestUnixFullAdvisesTheOwnersKnob(t *testing.T) {
	c := snapshot.Counters{ListenOverflows: u(0), ListenDrops: u(0), TCPReqQFullDrop: u(0), SyncookiesSent: u(0)}
	k := snapshot.ListenerKey{Netns: 1, Inode: 7}
	for comm, want := range map[string]string{
		"php-fpm8.2": "listen.backlog = 128",
		"gunicorn":   "--backlog 128",
		"uwsgi":      "--listen 128",
		"puma":       "backlog=128",
		"systemd":    "Backlog=128",
		"myserver":   "the listen(2) backlog the server passes",
	} {
		l := unixListener("/run/php/php8.2-fpm.sock", 5, 4, comm)
		o := observation(c, c, l, l, sys)
		o.PeakAccept[k], o.FullWindows[k], o.FullAtRefresh[k] = 5, 2, 1
		fs := Diagnose(o)
		f := fs[0]
		if f.Rule != "unix-accept-queue-full" || f.Severity != Critical || f.Listener != "/run/php/php8.2-fpm.sock" || !Trouble(fs) {
			t.Fatalf("%s: %v %+v", comm, rules(fs), f)
		}
		if !strings.Contains(f.Advice, want) || !strings.Contains(f.Why, "EAGAIN") || f.Evidence["accept_queue_peak"] != 5 || f.Evidence["backlog"] != 4 {
			t.Errorf("%s: advice %q why %q evidence %v", comm, f.Advice, f.Why, f.Evidence)
		}
		if f.Evidence["listener_drops"] != 0 || len(fs) != 1 {
			t.Errorf("%s: findings %v evidence %v: no drops to claim", comm, rules(fs), f.Evidence)
		}
	}

	// Full at every refresh: a stuck or paused pool, not a burst.
	l := unixListener("/run/php/fpm.sock", 5, 4, "php-fpm8.2")
	o := observation(c, c, l, l, sys)
	o.PeakAccept[k], o.FullWindows[k], o.FullAtRefresh[k] = 5, 10, 10
	f := Diagnose(o)[0]
	if !strings.HasPrefix(f.Summary, "UNIX accept queue stays full (5/4)") || !strings.Contains(f.Advice, "pm.max_children") {
		t.Errorf("slow: %q %q", f.Summary, f.Advice)
	}

	// A burst between refreshes only: a warning.
	o.FullAtRefresh[k], o.Last.Listeners[0].AcceptQueue = 0, 1
	if f := Diagnose(o)[0]; f.Severity != Warning || !strings.Contains(f.Summary, "bursts") {
		t.Errorf("burst: %s %q", f.Severity, f.Summary)
	}

	// Capped by somaxconn: the cap and a command come with it.
	capped := unixListener("/run/gunicorn.sock", 129, 128, "gunicorn")
	o = observation(c, c, capped, capped, snapshot.Sysctls{Somaxconn: i(128)})
	o.PeakAccept[k], o.FullAtRefresh[k] = 129, 10
	fs := Diagnose(o)
	if got := rules(fs); len(got) != 2 || got[0] != "unix-accept-queue-full" || got[1] != "backlog-capped-by-somaxconn" {
		t.Fatalf("capped: %v", got)
	}
	// gunicorn asks for 2048 by default: the command must reach it, not
	// double today's cap.
	if fs[0].Command != "sysctl -w net.core.somaxconn=2048" || !strings.Contains(fs[1].Advice, "--backlog 2048") ||
		fs[1].Command != "sysctl -w net.core.somaxconn=2048" || fs[1].RequestedBacklog != 2048 || fs[1].RequestedFrom != "gunicorn's default, capped" {
		t.Errorf("capped: %q %q %+v", fs[0].Command, fs[1].Advice, fs[1])
	}

	// Not full: healthy, and no somaxconn note for an idle listener.
	idle := unixListener("/run/docker.sock", 0, 4096, "dockerd")
	o = observation(c, c, idle, idle, sys)
	if fs := Diagnose(o); len(fs) != 1 || fs[0].Rule != "healthy" {
		t.Errorf("idle: %v", rules(fs))
	}
}

// TestUnixRefusedWithBPF: with doctor --bpf, refused connects prove the
// overflow even when the queue drained before any sample saw it full.
func TestUnixRefusedWithBPF(t *testing.T) {
	c := snapshot.Counters{ListenOverflows: u(0), ListenDrops: u(0), TCPReqQFullDrop: u(0), SyncookiesSent: u(0)}
	l := unixListener("@app", 0, 4, "gunicorn")
	o := observation(c, c, l, l, sys)
	o.UnixRefused = map[UnixName]uint64{{Netns: 1, Path: "@app"}: 7, {Netns: 2, Path: "@app"}: 5}
	fs := Diagnose(o)
	f := fs[0]
	if f.Rule != "unix-accept-queue-full" || f.Severity != Critical || f.Evidence["refused_connects"] != 7 || !strings.Contains(f.Summary, "7 connects refused") {
		t.Errorf("%v %+v", rules(fs), f)
	}
	// Traced and nothing refused, nothing full: healthy, no made-up count.
	o.UnixRefused = map[UnixName]uint64{}
	if fs := Diagnose(o); fs[0].Rule != "healthy" {
		t.Errorf("%v", rules(fs))
	}
}
