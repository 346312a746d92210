package doctor

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/backlog-dev/backlog/internal/snapshot"
)

// server is what doctor knows about the program that owns a listener: how
// it sets its listen(2) backlog, what it asks for by default, how it adds
// accepting capacity and whether it stops accepting at a connection limit.
// One table serves TCP and UNIX listeners; servers are recognised by the
// command name of an owner (and, for interpreters, its command line).
type server struct {
	name    string // as said to the user: "nginx", "redis"
	setting string // the backlog knob, with %d for the value
	// def is the backlog the server passes to listen() unless told
	// otherwise; 0 when it has none of its own. defSomaxconn: it asks for
	// net.core.somaxconn itself (Go, systemd).
	def          int64
	defSomaxconn bool
	workers      string // how to accept faster
	// limit is set for servers that stop accepting at a configured number
	// of connections: the knob and how to see it.
	limit string
	// flags are the command-line options that set the backlog.
	flags []string
	// goVersion is set for a Go program (goProgram).
	goVersion string
}

var servers = []struct {
	match func(comm string, args []string) bool
	s     server
}{
	{comm("nginx"), server{name: "nginx", setting: "nginx's `listen ... backlog=%d` (default 511)", def: 511,
		workers: "more nginx workers (`worker_processes`, `worker_connections`), or find what blocks them"}},
	{comm("redis-server"), server{name: "redis", setting: "redis's `tcp-backlog %d` in redis.conf (default 511)", def: 511,
		workers: "redis accepts in its one main thread: find what blocks it (SLOWLOG GET, a long KEYS or Lua script, a stopped process)",
		flags:   []string{"--tcp-backlog"}}},
	{comm("haproxy"), server{name: "haproxy", setting: "haproxy's `backlog %d` in the frontend (default: the frontend's maxconn)",
		workers: "more haproxy threads (`nbthread`)",
		limit: "haproxy stops accepting while `maxconn` connections are open (global, frontend and bind `maxconn`): " +
			"compare CurrConns with Maxconn in `show info` on the stats socket, then raise maxconn (and the ulimit it needs) " +
			"or add capacity behind it; meanwhile new clients wait in the accept queue and then get dropped"}},
	{comm("memcached"), server{name: "memcached", setting: "memcached's `-b %d` (`--listen-backlog`, default 1024)", def: 1024,
		workers: "more memcached threads (`-t`)", flags: []string{"-b", "--listen-backlog"},
		limit: "memcached stops accepting at `-c` connections (default 1024): with `-o no_maxconns_fast` it calls listen(fd, 0), so " +
			"its backlog reads 0 and one client fits in the queue (`stats`: curr_connections, listen_disabled_num); by default it " +
			"accepts and closes new clients at once (\"ERROR Too many open connections\"). Raise `-c`"}},
	{prefix("php-fpm"), server{name: "php-fpm", setting: "php-fpm's `listen.backlog = %d` in the pool's configuration (default 511)", def: 511,
		workers: "more php-fpm workers (`pm.max_children`, and `pm.start_servers`/`pm.min_spare_servers` for bursts)"}},
	{prefix("gunicorn"), server{name: "gunicorn", setting: "gunicorn's `--backlog %d` (default 2048)", def: 2048,
		workers: "more gunicorn workers (`--workers`, `--threads`)", flags: []string{"--backlog"}}},
	{prefix("uwsgi"), server{name: "uWSGI", setting: "uWSGI's `--listen %d` (default 100; uWSGI refuses to start when it exceeds somaxconn)", def: 100,
		workers: "more uWSGI workers (`--processes`, `--threads`)", flags: []string{"--listen", "-l"}}},
	{prefix("puma"), server{name: "puma", setting: "puma's `backlog=%d` in the bind URL (`bind 'unix:///path?backlog=N'`)",
		workers: "more puma workers or threads (`workers`, `threads`)"}},
	{comm("node"), server{name: "Node.js", setting: "Node's `server.listen({port, backlog: %d})` (default 511)", def: 511,
		workers: "more Node processes (the cluster module), or find what blocks the event loop"}},
	{pythonModule("http.server"), server{name: "Python http.server", setting: "a `request_queue_size = %d` on the server class (socketserver's default is 5)", def: 5,
		workers: "ThreadingHTTPServer, or a real server (gunicorn, uvicorn) in front of the application"}},
	{func(c string, _ []string) bool { return c == "systemd" }, server{name: "systemd", setting: "`Backlog=%d` in the systemd .socket unit (default: net.core.somaxconn)", defSomaxconn: true,
		workers: "more instances of the service the socket activates"}},
}

func comm(name string) func(string, []string) bool {
	return func(c string, _ []string) bool { return c == name }
}

func prefix(p string) func(string, []string) bool {
	return func(c string, _ []string) bool { return strings.HasPrefix(c, p) }
}

// pythonModule matches `python3 -m MOD`.
func pythonModule(mod string) func(string, []string) bool {
	return func(c string, args []string) bool {
		if !strings.HasPrefix(c, "python") {
			return false
		}
		i := slices.Index(args, "-m")
		return i >= 0 && i+1 < len(args) && args[i+1] == mod
	}
}

// goProgram is a Go program the table does not know by name. Go's
// net.Listen (net/http, gRPC, Caddy, Traefik... all listen through it)
// passes net.core.somaxconn as the backlog, read from
// /proc/sys/net/core/somaxconn once per process (net.listenerBacklog, a
// sync.Once over maxListenerBacklog() in net/sock_linux.go): a Listen
// after somaxconn was raised, in the same process, asks for the old value.
// Only a restart picks up the new one.
func goProgram(comm, version string) server {
	return server{name: comm + " (Go)", goVersion: version,
		setting: "net.core.somaxconn, to %d, then a restart of the Go program " +
			"(Go's net.Listen asks for somaxconn, read once per process; it has no backlog setting of its own)",
		workers: "more goroutines accepting, or more instances: find what keeps the accept loop from running " +
			"(a stopped process, GOMAXPROCS too low, a handler blocking the loop)"}
}

var generic = server{setting: "the listen(2) backlog the server passes (its own setting, %d or more)",
	workers: "more accepting workers or threads in the process shown"}

// serverOf recognises the owner of a listener; the generic server when
// none is known. args are the owners' command lines by pid, when read;
// gover the Go versions of those that are Go programs.
func serverOf(ps []snapshot.Process, args map[int][]string, gover map[int]string) (server, []string) {
	for _, p := range ps {
		for _, s := range servers {
			if s.match(p.Comm, args[p.PID]) {
				return s.s, args[p.PID]
			}
		}
		if v, ok := gover[p.PID]; ok {
			return goProgram(p.Comm, v), args[p.PID]
		}
		if p.PID == 1 && p.Comm != "" {
			return servers[len(servers)-1].s, nil // an init that is not called systemd
		}
	}
	return generic, nil
}

func (s server) backlog(n int64) string { return fmt.Sprintf(s.setting, n) }

// requested is the backlog the owner asked listen() for, and how doctor
// knows it.
type requested struct {
	backlog int64
	source  string
}

// requestedBacklog works out what the server asked for, given what the
// kernel shows (effective = min(asked, somaxconn at listen() time)) and
// somaxconn now. Unknown (zero) when nothing says.
func (s server) requestedBacklog(args []string, effective, somax int64) requested {
	if s.goVersion != "" {
		if s.goAskedSomaxconn(effective, somax) {
			return requested{effective, fmt.Sprintf("Go's net.Listen asks for net.core.somaxconn as the process read it at its first Listen "+
				"(%s, from the build info of /proc/PID/exe)", s.goVersion)}
		}
		return requested{} // a raw listen(2) of its own, say
	}
	for i, a := range args {
		for _, f := range s.flags {
			v, ok := "", false
			if a == f && i+1 < len(args) {
				v, ok = args[i+1], true
			} else if rest, cut := strings.CutPrefix(a, f+"="); cut {
				v, ok = rest, true
			}
			if n, err := strconv.ParseInt(v, 10, 64); ok && err == nil && n >= 0 {
				return requested{n, "its command line (" + f + ")"}
			}
		}
	}
	switch {
	case s.def > 0 && effective == s.def:
		return requested{s.def, s.name + "'s default"}
	case s.def > 0 && effective < s.def && (effective == somax || oldCap(effective) && effective < somax):
		// Below the default exactly at a somaxconn cap: the default,
		// capped. (A configured smaller backlog would be an unlikely
		// coincidence with the cap.)
		return requested{s.def, s.name + "'s default, capped"}
	case s.defSomaxconn:
		return requested{}
	}
	return requested{}
}

// goAskedSomaxconn reports whether a Go program's effective backlog is
// what net.Listen would have asked for: somaxconn now, or below it and a
// kernel default of somaxconn (128 before Linux 5.4, 4096 since), the
// value it most likely read at start before somaxconn was raised. Any
// other value came from a listen(2) of its own (syscall.Listen), whose
// request is unknown.
func (s server) goAskedSomaxconn(effective, somax int64) bool {
	return s.goVersion != "" && effective > 0 && (effective == somax || effective < somax && (effective == 128 || effective == 4096))
}

// oldCap reports whether b is a somaxconn default of older kernels: 128
// until Linux 5.4 (commit 19f92a030ca6 raised SOMAXCONN to 4096).
func oldCap(b int64) bool { return b == 128 }
