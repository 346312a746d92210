package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/backlog-dev/backlog/internal/collect"
	"github.com/backlog-dev/backlog/internal/netns"
)

// newFlagSet returns a flag set whose parse errors are usage errors and
// whose -h prints the flags to out.
func newFlagSet(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("backlog "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	return fs
}

// parse parses args; a bad flag is one line, not the whole usage.
func parse(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	if err == flag.ErrHelp {
		fmt.Fprintf(out, "Usage of %s:\n", fs.Name())
		fs.PrintDefaults()
		return err
	}
	if err != nil {
		return usageError{err: fmt.Errorf("%s: %w (see '%s -h')", fs.Name(), err, fs.Name())}
	}
	if fs.NArg() > 0 {
		return usageError{err: fmt.Errorf("%s: unexpected argument %q (see '%s -h')", fs.Name(), fs.Arg(0), fs.Name())}
	}
	return nil
}

// filterFlags are the filters of every command that lists listeners.
type filterFlags struct {
	netns     string
	netnsDirs stringList
	ports     portList
	pids      intList
	processes stringList
}

func (f *filterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.netns, "netns", "", "network namespaces: `all` (default when permitted), self, a name under /run/netns, a path, or pid:N")
	fs.Var(&f.netnsDirs, "netns-dir", "another `directory` of namespace bind mounts besides /run/netns (repeatable)")
	fs.Var(&f.ports, "port", "only listeners on this local `port` (repeatable)")
	fs.Var(&f.pids, "pid", "only listeners owned by this `pid` (repeatable)")
	fs.Var(&f.processes, "process", "only listeners owned by a process with this command `name` (repeatable)")
}

// options resolves the namespaces and returns the collection options, with
// a warning to show when the choice was narrowed for lack of privilege.
func (f *filterFlags) options() (collect.Options, string, error) {
	dirs := append(slices.Clone(netns.DefaultDirs), f.netnsDirs...)
	targets, warning, err := collect.Resolve(f.netns, "", dirs)
	if errors.Is(err, collect.ErrBadSpec) {
		return collect.Options{}, "", usageError{fmt.Errorf("backlog: %w", err)}
	}
	if err != nil {
		return collect.Options{}, "", err
	}
	return collect.Options{Targets: targets, Ports: f.ports, PIDs: f.pids, Processes: f.processes}, warning, nil
}

type portList []uint16

func (p *portList) String() string { return fmt.Sprint(*p) }
func (p *portList) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("%q is not a TCP port (1-65535)", s)
	}
	*p = append(*p, uint16(n))
	return nil
}

type intList []int

func (p *intList) String() string { return fmt.Sprint(*p) }
func (p *intList) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return fmt.Errorf("%q is not a process id", s)
	}
	*p = append(*p, n)
	return nil
}

type stringList []string

func (p *stringList) String() string { return fmt.Sprint(*p) }
func (p *stringList) Set(s string) error {
	if s == "" {
		return fmt.Errorf("empty process name")
	}
	*p = append(*p, s)
	return nil
}
