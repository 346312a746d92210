package collect

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/backlog-dev/backlog/internal/caps"
	"github.com/backlog-dev/backlog/internal/procfd"
	"github.com/backlog-dev/backlog/internal/procnet"
	"github.com/backlog-dev/backlog/internal/snapshot"
)

// hidden works out what the refused processes hide from what was asked:
// a refused /proc/PID/ns/net hides listeners only when the namespace's
// LISTEN sockets (readable in /proc/PID/net/tcp without ptrace access) are
// not among those read (seen); a refused /proc/PID/fd hides owners only
// when a listener shown has none. With --pid or --process, only a refused
// process that matches them matters.
func hidden(opts *Options, fdRefused []procfd.Refusal, seen map[uint32]struct{}, shown []snapshot.Listener) []snapshot.Hidden {
	if len(opts.Refused) == 0 && len(fdRefused) == 0 {
		return nil
	}
	ownerFilter := len(opts.PIDs) > 0 || len(opts.Processes) > 0
	asked := func(pid int, comm string) bool {
		return !ownerFilter || slices.Contains(opts.PIDs, pid) || slices.Contains(opts.Processes, comm)
	}
	byPID := map[int]*snapshot.Hidden{}
	entry := func(pid int, comm string, err error) *snapshot.Hidden {
		h, ok := byPID[pid]
		if !ok {
			h = &snapshot.Hidden{PID: pid, Comm: comm, Errno: errnoName(err)}
			byPID[pid] = h
		}
		return h
	}
	tcpAsked := len(opts.Paths) == 0 || len(opts.Ports) > 0
	for _, r := range opts.Refused {
		comm := readComm(opts.procRoot(), r.PID)
		if !tcpAsked || !asked(r.PID, comm) {
			continue
		}
		ls, err := procnet.ReadListening(opts.procRoot(), r.PID)
		if err != nil {
			continue // exited since
		}
		missing := 0
		for _, l := range ls {
			_, ok := seen[l.Inode]
			if !ok && (len(opts.Ports) == 0 || slices.Contains(opts.Ports, l.Port)) {
				missing++
			}
		}
		if missing > 0 {
			h := entry(r.PID, comm, r.Err)
			h.Netns, h.MissingListeners = true, missing
		}
	}
	unowned := slices.ContainsFunc(shown, func(l snapshot.Listener) bool { return l.Processes == nil })
	for _, r := range fdRefused {
		if ownerFilter && asked(r.PID, r.Comm) || !ownerFilter && unowned {
			entry(r.PID, r.Comm, r.Err).Owners = true
		}
	}
	var out []snapshot.Hidden
	for _, h := range byPID {
		out = append(out, *h)
	}
	slices.SortFunc(out, func(a, b snapshot.Hidden) int { return a.PID - b.PID })
	return out
}

func readComm(procRoot string, pid int) string {
	b, err := os.ReadFile(procRoot + "/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func errnoName(err error) string {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return fmt.Sprint(err)
	}
	switch errno {
	case syscall.EACCES:
		return "EACCES"
	case syscall.EPERM:
		return "EPERM"
	}
	return errno.Error()
}

// describeMax is how many refused processes a description names.
const describeMax = 3

// DescribeHidden says in one line what the refused processes hide and
// what would reveal them, fitted to this process's privileges: root with
// CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH is refused only by a security
// module or /proc's hidepid, which no flag of backlog can change.
func DescribeHidden(hs []snapshot.Hidden, shown []snapshot.Listener) string {
	if len(hs) == 0 {
		return ""
	}
	var who []string
	var nsPIDs, fdPIDs []int
	missing := 0
	errnos := map[string]bool{}
	for _, h := range hs {
		if len(who) < describeMax {
			s := "pid " + strconv.Itoa(h.PID)
			if h.Comm != "" {
				s += " (" + h.Comm + ")"
			}
			who = append(who, s)
		}
		errnos[h.Errno] = true
		if h.Netns {
			nsPIDs = append(nsPIDs, h.PID)
			missing = max(missing, h.MissingListeners)
		}
		if h.Owners {
			fdPIDs = append(fdPIDs, h.PID)
		}
	}
	subject := strings.Join(who, ", ")
	switch {
	case len(hs) > describeMax && !refusedDespitePrivilege():
		// Without the privilege most processes are refused: naming
		// three of them says nothing.
		subject = fmt.Sprintf("%d processes", len(hs))
	case len(hs) > describeMax:
		subject = fmt.Sprintf("%d processes (%s and %d more)", len(hs), subject, len(hs)-describeMax)
	}
	with := " with " + strings.Join(slices.Sorted(maps.Keys(errnos)), " or ")
	var what []string
	if len(nsPIDs) > 0 {
		n := plural(missing, "listener")
		if len(nsPIDs) > 1 {
			n = "at least " + n
		}
		what = append(what, fmt.Sprintf("%s refused%s, so a namespace only %s holds, with %s, is not shown",
			procPaths(nsPIDs, "ns/net"), with, pronoun(len(nsPIDs)), n))
	}
	if len(fdPIDs) > 0 {
		unowned := 0
		for _, l := range shown {
			if l.Processes == nil {
				unowned++
			}
		}
		s := procPaths(fdPIDs, "fd") + " refused" + with + ", so"
		if unowned > 0 {
			s += fmt.Sprintf(" the owner of %s shown is unknown", plural(unowned, "listener"))
		} else {
			s += " listeners " + pronoun(len(fdPIDs)) + " hold are not shown"
		}
		what = append(what, s)
	}
	return fmt.Sprintf("cannot inspect %s: %s; %s", subject, strings.Join(what, "; "), hiddenAdvice())
}

// hiddenAdvice says what would reveal refused processes to this caller.
func hiddenAdvice() string {
	if refusedDespitePrivilege() {
		return "backlog has CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, so a security module (AppArmor, SELinux, Yama) or /proc's hidepid option refuses it, and only that policy can allow it"
	}
	return "run as root, or with CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, to see them"
}

// refusedAdvice is hiddenAdvice for one file asked for by name.
func refusedAdvice() string {
	if refusedDespitePrivilege() {
		return "backlog has CAP_SYS_PTRACE, so a security module or /proc's hidepid option refuses it"
	}
	return "reading another process's namespace needs root or CAP_SYS_PTRACE"
}

func refusedDespitePrivilege() bool {
	eff, err := caps.Effective()
	return err == nil && eff.Has(caps.SysPtrace) && eff.Has(caps.DacReadSearch)
}

func procPaths(pids []int, file string) string {
	if len(pids) == 1 {
		return "/proc/" + strconv.Itoa(pids[0]) + "/" + file
	}
	return "/proc/PID/" + file
}

func pronoun(n int) string {
	if n == 1 {
		return "it"
	}
	return "they"
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}
