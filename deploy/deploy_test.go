package deploy_test

// Checks of the deployment examples (Dockerfile, deploy/): they parse, the
// relay configs in them are valid and agree with the manifests around them
// (paths, variables, secret files, networks), every tlsrelay command line
// in them is one the binary accepts, and the dashboard and alerts use only
// metric names a real relay exports. No container engine, cluster or
// systemd is needed: the files are read as data.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tlsrelay/tlsrelay/policy"
)

const (
	imageBinary = "/usr/local/bin/tlsrelay" // where the Dockerfile puts the binary
	imageSpool  = "/var/spool/tlsrelay"     // the Dockerfile's VOLUME
)

// ---- generic helpers --------------------------------------------------------

// yamlDocs decodes every document of a YAML file (several in a Kubernetes
// manifest) into generic values; empty documents are skipped. yaml.v3
// rejects duplicate keys, which tools would otherwise resolve silently.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc == nil {
			continue
		}
		m, ok := doc.(map[string]any)
		if !ok {
			t.Fatalf("%s: a document is a %T, want a mapping", path, doc)
		}
		docs = append(docs, m)
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no YAML document", path)
	}
	return docs
}

// dig walks a generic YAML/JSON value by map keys and list indexes
// (strconv'd ints); it returns nil where the path does not exist.
func dig(v any, path ...string) any {
	for _, k := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func digString(v any, path ...string) string { s, _ := dig(v, path...).(string); return s }
func digList(v any, path ...string) []any    { l, _ := dig(v, path...).([]any); return l }

// yamlStrings converts a YAML list of strings.
func yamlStrings(t *testing.T, what string, v any) []string {
	t.Helper()
	l, ok := v.([]any)
	if !ok {
		t.Fatalf("%s: want a list of strings, got %T", what, v)
	}
	out := make([]string, len(l))
	for i, e := range l {
		s, ok := e.(string)
		if !ok {
			t.Fatalf("%s[%d]: want a string, got %T", what, i, e)
		}
		out[i] = s
	}
	return out
}

// checkCommand checks that a tlsrelay command line from a deployment file
// names an existing subcommand and only flags it defines: it runs the
// command with -h added at the end, which stops flag parsing before the
// command does anything (the context is cancelled too, in case it would).
func checkCommand(t *testing.T, where string, argv []string) {
	t.Helper()
	if len(argv) > 0 && (argv[0] == imageBinary || argv[0] == "tlsrelay") {
		argv = argv[1:]
	}
	if len(argv) == 0 {
		t.Errorf("%s: no tlsrelay subcommand in %q", where, argv)
		return
	}
	// The built binary, as the deployment runs it; -h stops it before it
	// does anything, and the deadline bounds it if it would not.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, tlsrelayBin, append(slices.Clone(argv), "-h")...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	text := out.String()
	for _, bad := range []string{"unknown command", "flag provided but not defined", "unexpected argument", "invalid value"} {
		if strings.Contains(text, bad) {
			t.Errorf("%s: `tlsrelay %s` is not a valid command line: %s", where, strings.Join(argv, " "), lineContaining(text, bad))
			return
		}
	}
	// A usage error exits 1 having printed only the usage; any other
	// failure prints "tlsrelay: <error>" (main.go).
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || strings.Contains(text, "tlsrelay: ") {
		t.Errorf("%s: `tlsrelay %s -h` = %v, want the usage (is -h reached, i.e. no positional argument before it?):\n%s", where, strings.Join(argv, " "), err, text)
	}
}

func lineContaining(text, containing string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, containing) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// argAfter returns the value after flag in argv ("" if absent).
func argAfter(argv []string, flag string) string {
	for i, a := range argv {
		if a == flag && i+1 < len(argv) {
			return argv[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// deployedConfig is a relay.yaml embedded in a deployment, with what the
// deployment provides around it.
type deployedConfig struct {
	name string // for messages
	src  string
	// env lists the variables the deployment sets for the relay; any other
	// variable the config names is an error (nil: accept any name).
	env []string
	// secretDir is where the deployment mounts secret files (ending in
	// "/"), and secretFiles the names it puts there.
	secretDir   string
	secretFiles []string
}

// parse validates the config with policy.Parse, as `serve` would in the
// deployment. The secret files are not on this machine, so secretDir is
// rewritten in the config text to a temporary directory holding a dummy file
// for each of secretFiles (a config naming another file there fails, as it
// would in the deployment); each provided variable gets a dummy value. It
// returns the config and the variables it looked up.
func (d deployedConfig) parse(t *testing.T) (*policy.Config, []string) {
	t.Helper()
	src := d.src
	if d.secretDir != "" {
		tmp := t.TempDir()
		src = strings.ReplaceAll(src, d.secretDir, tmp+string(filepath.Separator))
		for _, f := range d.secretFiles {
			if err := os.WriteFile(filepath.Join(tmp, f), []byte("dummy-secret-for-tests\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	var looked []string
	env := func(k string) (string, bool) {
		looked = append(looked, k)
		if d.env == nil || slices.Contains(d.env, k) {
			return "dummy-" + strings.ToLower(k), true
		}
		return "", false
	}
	cfg, err := policy.Parse(d.name, []byte(src), env)
	if err != nil {
		t.Fatalf("%s is not a valid relay config here (with the deployment's variables %q and secret files %q):\n%v", d.name, d.env, d.secretFiles, err)
	}
	return cfg, looked
}

func isLoopbackAddr(t *testing.T, addr string) bool {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return ap.Addr().IsLoopback()
}

// ---- every YAML file --------------------------------------------------------

func TestDeployYAMLParses(t *testing.T) {
	n := 0
	err := filepath.WalkDir("deploy", func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ext := filepath.Ext(path); ext == ".yml" || ext == ".yaml" {
			yamlDocs(t, path)
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Errorf("found %d YAML files under deploy/, want at least 5 (compose, its relay.yaml, kubernetes, systemd relay.yaml, alerts)", n)
	}
}

// ---- metric names in the dashboard and alerts --------------------------------

// sourceMetricNames reads the metric names registered in the Go source: the
// admin package builds them as "tlsrelay_"+name through small helpers
// (counter, vec, gauge) or spells them out (Name: "tlsrelay_..."). A
// CounterVec with no children yet has no line in /metrics, so the scrape
// alone cannot list them; TestDeployMetricNames checks that this parser
// finds every name the scrape shows, so it cannot silently fall behind.
func sourceMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	files, _ := filepath.Glob("*.go")
	more, _ := filepath.Glob("*/*.go") // every package: admin, daemon, ...
	helper := regexp.MustCompile(`\b(?:counter|vec|gauge|histogram)\("([a-z0-9_]+)"`)
	literal := regexp.MustCompile(`(?:Name:\s*|NewDesc\()"(tlsrelay_[a-z0-9_]+)"`)
	names := map[string]bool{}
	for _, f := range append(files, more...) {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range helper.FindAllSubmatch(src, -1) {
			names["tlsrelay_"+string(m[1])] = true
		}
		for _, m := range literal.FindAllSubmatch(src, -1) {
			names[string(m[1])] = true
		}
	}
	return names
}

// scrapedMetricNames runs a relay, delivers one message so that the
// per-provider families have samples, and returns the metric families on
// its /metrics (histograms by their base name).
func scrapedMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	spool := t.TempDir()
	text := relayMetricsAfterOne(t, spool)
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) \S+$`).FindAllStringSubmatch(text, -1) {
		names[m[1]] = true
	}
	if !names["tlsrelay_deliveries_total"] {
		t.Fatalf("/metrics after a delivery has no tlsrelay_deliveries_total:\n%s", text)
	}
	return names
}

var metricToken = regexp.MustCompile(`tlsrelay_[a-z0-9_]+`)

func TestDeployMetricNames(t *testing.T) {
	source := sourceMetricNames(t)
	scraped := scrapedMetricNames(t)
	for n := range scraped {
		if strings.HasPrefix(n, "tlsrelay_") && !source[n] {
			t.Errorf("%s is on /metrics but sourceMetricNames did not find it in the source: teach it the new way of registering metrics", n)
		}
	}
	known := func(tok string) bool {
		if source[tok] || scraped[tok] {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(tok, suffix); ok && (source[base] || scraped[base]) {
				return true
			}
		}
		return false
	}
	used := map[string]bool{}
	for _, f := range []string{"deploy/grafana/tlsrelay-dashboard.json", "deploy/prometheus/alerts.yaml"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		toks := metricToken.FindAllString(string(data), -1)
		if len(toks) == 0 {
			t.Errorf("%s: no tlsrelay_ metric", f)
		}
		for _, tok := range toks {
			if !known(tok) {
				t.Errorf("%s: %s is not a metric tlsrelay exports (known: %v)", f, tok, sortedKeys(source))
			}
			if f == "deploy/grafana/tlsrelay-dashboard.json" {
				used[strings.TrimSuffix(tok, "_bucket")] = true
			}
		}
	}
	for n := range source {
		if !used[n] {
			t.Errorf("the dashboard has no panel for %s: add one to deploy/grafana/tlsrelay-dashboard.json", n)
		}
	}
}

// ---- dashboard and alert structure -------------------------------------------------

// promQLBalanced reports whether (), [] and {} nest properly in a PromQL
// expression, outside quoted strings: a cheap check for a broken edit.
func promQLBalanced(expr string) bool {
	var stack []rune
	var quote rune
	for _, r := range expr {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '"' || r == '\'' || r == '`':
			quote = r
		case r == '(' || r == '[' || r == '{':
			stack = append(stack, r)
		case r == ')' || r == ']' || r == '}':
			open := map[rune]rune{')': '(', ']': '[', '}': '{'}[r]
			if len(stack) == 0 || stack[len(stack)-1] != open {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0 && quote == 0
}

func TestDeployDashboard(t *testing.T) {
	const file = "deploy/grafana/tlsrelay-dashboard.json"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if v, _ := d["schemaVersion"].(float64); v < 36 {
		t.Errorf("%s: schemaVersion %v, want >= 36", file, d["schemaVersion"])
	}
	dsVar := ""
	for _, v := range digList(d, "templating", "list") {
		if digString(v, "type") == "datasource" && digString(v, "query") == "prometheus" {
			dsVar = "${" + digString(v, "name") + "}"
		}
	}
	if dsVar == "" {
		t.Fatalf("%s: no Prometheus data source variable in templating", file)
	}
	ids := map[float64]bool{}
	targets := 0
	for _, p := range digList(d, "panels") {
		title := digString(p, "title")
		id, _ := dig(p, "id").(float64)
		if ids[id] {
			t.Errorf("%s: panel %q: duplicate id %v", file, title, id)
		}
		ids[id] = true
		if dig(p, "gridPos") == nil {
			t.Errorf("%s: panel %q has no gridPos", file, title)
		}
		if digString(p, "type") == "row" {
			continue
		}
		if digString(p, "datasource", "uid") != dsVar {
			t.Errorf("%s: panel %q: datasource uid %q, want %s", file, title, digString(p, "datasource", "uid"), dsVar)
		}
		for _, tg := range digList(p, "targets") {
			targets++
			if e := digString(tg, "expr"); e == "" || !promQLBalanced(e) {
				t.Errorf("%s: panel %q: expression %q is empty or unbalanced", file, title, e)
			}
		}
	}
	if targets < 10 {
		t.Errorf("%s: %d queries, want the panels of deploy/ (at least 10)", file, targets)
	}
}

func TestDeployAlerts(t *testing.T) {
	const file = "deploy/prometheus/alerts.yaml"
	doc := yamlDocs(t, file)[0]
	n := 0
	for _, g := range digList(doc, "groups") {
		for _, r := range digList(g, "rules") {
			n++
			name := digString(r, "alert")
			if name == "" {
				t.Errorf("%s: a rule without alert:", file)
			}
			if e := digString(r, "expr"); e == "" || !promQLBalanced(e) {
				t.Errorf("%s: %s: expression %q is empty or unbalanced", file, name, e)
			}
			if digString(r, "labels", "severity") == "" || digString(r, "annotations", "summary") == "" {
				t.Errorf("%s: %s: want labels.severity and annotations.summary", file, name)
			}
			if f := digString(r, "for"); f != "" {
				if _, err := time.ParseDuration(f); err != nil {
					t.Errorf("%s: %s: for: %v", file, name, err)
				}
			}
		}
	}
	if n < 4 {
		t.Errorf("%s: %d rules, want at least 4 (queue age, failures, certificate expiry, AUTH failures)", file, n)
	}
}
