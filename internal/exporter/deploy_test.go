package exporter

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/backlog-dev/backlog/internal/testutil"
	"go.yaml.in/yaml/v2"
)

const root = "../../"

// TestAlertRules runs promtool on deploy/prometheus: the rules are valid
// and their unit tests pass.
func TestAlertRules(t *testing.T) {
	promtool := testutil.RequireTool(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "backlog.rules.yml"},
		{"test", "rules", "backlog.rules_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = root + "deploy/prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

var metricNameRe = regexp.MustCompile(`\bbacklog_[a-z0-9_]+`)

// known are the metric names serve exports under backlog_.
func known() []string {
	names := append([]string{"backlog_build_info"}, traceMetricNames...)
	for _, m := range allMetrics {
		names = append(names, m.name)
	}
	return names
}

// TestDeployAndDocsNameRealMetrics: every backlog_ name in the rules, the
// dashboard and the docs is a metric the exporter has, so a rename cannot
// leave an alert that never fires; and the docs list every metric.
func TestDeployAndDocsNameRealMetrics(t *testing.T) {
	names := known()
	for _, f := range []string{
		"deploy/prometheus/backlog.rules.yml",
		"deploy/prometheus/backlog.rules_test.yml",
		"deploy/grafana/backlog.json",
		"docs/metrics.md",
	} {
		b, err := os.ReadFile(root + f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range metricNameRe.FindAllString(string(b), -1) {
			if !slices.Contains(names, n) {
				t.Errorf("%s names %s, which the exporter does not export", f, n)
			}
		}
	}
	doc, err := os.ReadFile(root + "docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range allMetrics {
		row := "| `" + m.name + "` | " + strings.ToLower(m.typ.String()) + " |"
		if !bytes.Contains(doc, []byte(row)) {
			t.Errorf("docs/metrics.md lacks the row %s", row)
		}
	}
	for _, s := range sources {
		if !bytes.Contains(doc, []byte("| `"+s+"` |")) {
			t.Errorf("docs/metrics.md does not explain error source %s", s)
		}
	}
}

func TestDashboard(t *testing.T) {
	b, err := os.ReadFile(root + "deploy/grafana/backlog.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string
		Title  string
		Panels []struct {
			Title   string
			Type    string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	queries := 0
	for _, p := range d.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		queries += len(p.Targets)
	}
	if d.UID == "" || d.Title == "" || queries < 10 {
		t.Errorf("uid %q title %q, %d queries", d.UID, d.Title, queries)
	}
}

// TestDaemonSetPrivileges holds the DaemonSet to the privileges
// TestServeLeastPrivilege (cmd/backlog) shows are needed and enough.
func TestDaemonSetPrivileges(t *testing.T) {
	b, err := os.ReadFile(root + "deploy/kubernetes/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type container struct {
		Args            []string
		SecurityContext struct {
			RunAsUser              *int  `yaml:"runAsUser"`
			Privileged             *bool `yaml:"privileged"`
			ReadOnlyRootFilesystem bool  `yaml:"readOnlyRootFilesystem"`
			Capabilities           struct {
				Drop []string
				Add  []string
			}
		} `yaml:"securityContext"`
		Ports []struct {
			ContainerPort int `yaml:"containerPort"`
		}
	}
	var ds struct {
		Kind string
		Spec struct {
			Template struct {
				Spec struct {
					HostPID                      bool  `yaml:"hostPID"`
					HostNetwork                  bool  `yaml:"hostNetwork"`
					AutomountServiceAccountToken *bool `yaml:"automountServiceAccountToken"`
					Containers                   []container
				}
			}
		}
	}
	found := false
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		ds.Kind = ""
		if err := dec.Decode(&ds); err != nil {
			break
		}
		if ds.Kind == "DaemonSet" {
			found = true
			break
		}
	}
	if !found {
		t.Fatal("no DaemonSet in daemonset.yaml")
	}
	spec := ds.Spec.Template.Spec
	if !spec.HostPID || spec.HostNetwork || spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("hostPID %v hostNetwork %v automountServiceAccountToken %v; want true, false, false", spec.HostPID, spec.HostNetwork, spec.AutomountServiceAccountToken)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	add := slices.Clone(sc.Capabilities.Add)
	slices.Sort(add)
	if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) || !slices.Equal(add, []string{"DAC_READ_SEARCH", "SYS_ADMIN", "SYS_PTRACE"}) {
		t.Errorf("capabilities drop %v add %v; want drop ALL, add DAC_READ_SEARCH SYS_ADMIN SYS_PTRACE", sc.Capabilities.Drop, sc.Capabilities.Add)
	}
	if !sc.ReadOnlyRootFilesystem || sc.Privileged == nil || *sc.Privileged || sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Errorf("securityContext %+v; want read-only root, not privileged, uid 0", sc)
	}
	if len(c.Args) == 0 || c.Args[0] != "serve" || !slices.Contains(c.Args, "--netns=all") || len(c.Ports) != 1 || c.Ports[0].ContainerPort != 9871 {
		t.Errorf("args %v ports %+v; want serve --netns=all on 9871 (in a pod's namespace the default is that namespace alone)", c.Args, c.Ports)
	}
}
