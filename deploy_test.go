package main

// Checks of the deployment examples (Dockerfile, deploy/): they parse, the
// relay configs in them are valid and agree with the manifests around them
// (paths, variables, secret files, networks), every tlsrelay command line
// in them is one the binary accepts, and the dashboard and alerts use only
// metric names a real relay exports. No container engine, cluster or
// systemd is needed: the files are read as data.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tlsrelay/tlsrelay/internal/smtptest"
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
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	err := run(ctx, append(slices.Clone(argv), "-h"), &out, &out)
	text := out.String()
	for _, bad := range []string{"unknown command", "flag provided but not defined", "unexpected argument", "invalid value"} {
		if strings.Contains(text, bad) {
			t.Errorf("%s: `tlsrelay %s` is not a valid command line: %s", where, strings.Join(argv, " "), lineContaining(text, bad))
			return
		}
	}
	if !errors.Is(err, errUsage) {
		t.Errorf("%s: `tlsrelay %s -h` = %v, want the usage (is -h reached, i.e. no positional argument before it?)", where, strings.Join(argv, " "), err)
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

// ---- Dockerfile --------------------------------------------------------------

// dockerInstr is one Dockerfile instruction, continuation lines joined.
type dockerInstr struct {
	line    int
	cmd     string // upper case
	args    string
	comment string // the comment line right before it, if any
}

func readDockerfile(t *testing.T) []dockerInstr {
	t.Helper()
	f, err := os.Open("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []dockerInstr
	var cur *dockerInstr
	lastComment := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if cur == nil {
			if line == "" {
				lastComment = ""
				continue
			}
			if strings.HasPrefix(line, "#") {
				lastComment = line
				continue
			}
			cmd, args, _ := strings.Cut(line, " ")
			cur = &dockerInstr{line: n, cmd: strings.ToUpper(cmd), comment: lastComment}
			lastComment = ""
			line = args
		} else if strings.HasPrefix(line, "#") {
			continue // comments inside a continued instruction are dropped
		}
		cont := strings.HasSuffix(line, `\`)
		cur.args = strings.TrimSpace(cur.args + " " + strings.TrimSuffix(line, `\`))
		if !cont {
			out = append(out, *cur)
			cur = nil
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// execForm decodes a JSON-array (exec form) argument.
func execForm(t *testing.T, in dockerInstr, s string) []string {
	t.Helper()
	var argv []string
	if err := json.Unmarshal([]byte(s), &argv); err != nil {
		t.Fatalf("Dockerfile:%d: %s %s: want the exec form (a JSON array): there is no shell in the image: %v", in.line, in.cmd, s, err)
	}
	return argv
}

func TestDockerfile(t *testing.T) {
	instrs := readDockerfile(t)
	var froms []int
	for i, in := range instrs {
		if in.cmd == "FROM" {
			froms = append(froms, i)
		}
	}
	if len(froms) < 2 {
		t.Fatalf("Dockerfile: %d FROM lines, want a multi-stage build", len(froms))
	}

	// The build stage's Go is the one go.mod asks for.
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod: no go line")
	}
	build := instrs[froms[0]]
	if want := "golang:" + string(m[1]); !strings.HasPrefix(build.args, want) || !strings.Contains(build.args, " AS build") {
		t.Errorf("Dockerfile:%d: FROM %s, want %s... AS build (go.mod says go %s)", build.line, build.args, want, m[1])
	}
	final := instrs[froms[len(froms)-1]:]
	if got := final[0].args; got != "gcr.io/distroless/static-debian12:nonroot" && !strings.HasPrefix(got, "gcr.io/distroless/static-debian12:nonroot@sha256:") {
		t.Errorf("Dockerfile:%d: final stage FROM %s, want gcr.io/distroless/static-debian12:nonroot", final[0].line, got)
	}

	// The one build command CI runs (.ci/run reads the line after the marker).
	var buildLine *dockerInstr
	for i := range instrs {
		if instrs[i].comment == "# ci:build" {
			buildLine = &instrs[i]
		}
	}
	switch {
	case buildLine == nil:
		t.Error(`Dockerfile: no instruction right after a "# ci:build" comment (.ci/run builds with that line)`)
	case buildLine.cmd != "RUN":
		t.Errorf("Dockerfile:%d: the ci:build line is %s, want RUN", buildLine.line, buildLine.cmd)
	default:
		for _, want := range []string{"CGO_ENABLED=0 go build", "-trimpath", "-X main.version=${VERSION}", `${OUT}/tlsrelay`} {
			if !strings.Contains(buildLine.args, want) {
				t.Errorf("Dockerfile:%d: the ci:build command lacks %q: %s", buildLine.line, want, buildLine.args)
			}
		}
		raw, _ := os.ReadFile("Dockerfile")
		lines := strings.Split(string(raw), "\n")
		if strings.HasSuffix(strings.TrimSpace(lines[buildLine.line-1]), `\`) {
			t.Errorf("Dockerfile:%d: the ci:build command must fit on one line: .ci/run reads only that line", buildLine.line)
		}
	}

	var user, volume, expose string
	var health, entry, cmd dockerInstr
	var chown []string
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "VOLUME":
			volume = in.args
		case "EXPOSE":
			expose = in.args
		case "HEALTHCHECK":
			health = in
		case "ENTRYPOINT":
			entry = in
		case "CMD":
			cmd = in
		case "COPY":
			if c := regexp.MustCompile(`--chown=(\S+)`).FindStringSubmatch(in.args); c != nil {
				chown = append(chown, c[1]+" "+in.args)
			}
		}
	}
	uid, gid, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 || gid == "" {
		t.Errorf("Dockerfile: final USER %q, want a numeric non-root uid:gid (runAsNonRoot can verify only numbers)", user)
	}
	if volume != imageSpool && volume != fmt.Sprintf("[%q]", imageSpool) {
		t.Errorf("Dockerfile: VOLUME %q, want %s", volume, imageSpool)
	}
	if f := strings.Fields(expose); !slices.Contains(f, "2525") || !slices.Contains(f, "9125") {
		t.Errorf("Dockerfile: EXPOSE %q, want 2525 and 9125", expose)
	}
	spoolOwned := false
	for _, c := range chown {
		if strings.HasPrefix(c, user+" ") && strings.HasSuffix(c, " "+imageSpool) {
			spoolOwned = true
		}
	}
	if !spoolOwned {
		t.Errorf("Dockerfile: no COPY --chown=%s ... %s: the spool must belong to the runtime user (chown: %q)", user, imageSpool, chown)
	}

	_, hc, ok := strings.Cut(health.args, "CMD ")
	if !ok {
		t.Fatalf("Dockerfile:%d: HEALTHCHECK %q, want HEALTHCHECK [OPTIONS] CMD [...]", health.line, health.args)
	}
	hargv := execForm(t, health, strings.TrimSpace(hc))
	if want := []string{imageBinary, "health", "-dir", imageSpool}; !slices.Equal(hargv, want) {
		t.Errorf("Dockerfile: HEALTHCHECK CMD %q, want %q", hargv, want)
	}
	checkCommand(t, "Dockerfile HEALTHCHECK", hargv)
	eargv := execForm(t, entry, entry.args)
	cargv := execForm(t, cmd, cmd.args)
	if !slices.Equal(eargv, []string{imageBinary}) {
		t.Errorf("Dockerfile: ENTRYPOINT %q, want [%q]", eargv, imageBinary)
	}
	checkCommand(t, "Dockerfile ENTRYPOINT+CMD", append(eargv, cargv...))

	ignore, err := os.ReadFile(".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(ignore), "\n")
	for _, want := range []string{".git", "spool/", "*.test"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
}

// ---- docker compose ---------------------------------------------------------

func TestDeployCompose(t *testing.T) {
	compose := yamlDocs(t, "deploy/docker-compose.yml")[0]
	relay := dig(compose, "services", "tlsrelay")
	if relay == nil {
		t.Fatal("docker-compose.yml: no services.tlsrelay")
	}
	if digString(relay, "build", "context") == "" {
		t.Error("services.tlsrelay: want build.context (the repository's Dockerfile)")
	}
	if dig(relay, "ports") != nil {
		t.Error("services.tlsrelay publishes ports: apps reach it on the compose network; a published port bypasses allowed_networks (it arrives from the gateway)")
	}

	// Variables: interpolated from the user's environment, never literal.
	var env []string
	switch e := dig(relay, "environment").(type) {
	case map[string]any:
		for k, v := range e {
			env = append(env, k)
			if s, _ := v.(string); !regexp.MustCompile(`^\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}$`).MatchString(s) {
				t.Errorf("services.tlsrelay.environment.%s = %q: want ${%s} interpolation, never a literal value", k, s, k)
			}
		}
	default:
		t.Fatalf("services.tlsrelay.environment: want a mapping of ${VAR} interpolations, got %T", e)
	}

	// The config file: mounted where the image's CMD reads it.
	var configSrc, spoolVolume string
	for _, v := range yamlStrings(t, "services.tlsrelay.volumes", dig(relay, "volumes")) {
		parts := strings.Split(v, ":")
		switch {
		case len(parts) >= 2 && parts[1] == "/etc/tlsrelay/relay.yaml":
			configSrc = filepath.Join("deploy", parts[0])
		case len(parts) >= 2 && parts[1] == imageSpool:
			spoolVolume = parts[0]
		}
	}
	if configSrc == "" {
		t.Fatal("services.tlsrelay.volumes: relay.yaml is not mounted at /etc/tlsrelay/relay.yaml (the image's CMD)")
	}
	if spoolVolume == "" || dig(compose, "volumes") == nil || !yamlHasKey(dig(compose, "volumes"), spoolVolume) {
		t.Errorf("services.tlsrelay.volumes: want a named volume (declared under volumes:) on %s, got %q", imageSpool, spoolVolume)
	}
	src, err := os.ReadFile(configSrc)
	if err != nil {
		t.Fatal(err)
	}
	cfg, looked := deployedConfig{name: configSrc, src: string(src), env: env}.parse(t)
	for _, k := range env {
		if !slices.Contains(looked, k) {
			t.Errorf("services.tlsrelay.environment.%s: the config does not use it", k)
		}
	}
	if cfg.Queue.Dir != imageSpool {
		t.Errorf("%s: queue.dir %s, want %s (the volume, and where HEALTHCHECK looks)", configSrc, cfg.Queue.Dir, imageSpool)
	}

	// The network: a fixed subnet, which allowed_networks must stay within.
	var subnets []netip.Prefix
	for name, n := range yamlMap(dig(compose, "networks")) {
		for i, c := range digList(n, "ipam", "config") {
			p, err := netip.ParsePrefix(digString(c, "subnet"))
			if err != nil {
				t.Errorf("networks.%s.ipam.config[%d].subnet: %v", name, i, err)
				continue
			}
			subnets = append(subnets, p)
		}
	}
	if len(subnets) == 0 {
		t.Fatal("docker-compose.yml: no network with a fixed subnet (networks.*.ipam.config[].subnet), which allowed_networks needs")
	}
	if isLoopbackAddr(t, cfg.Listen.Addr) {
		t.Errorf("%s: listen.addr %s is loopback: the app container could not reach it", configSrc, cfg.Listen.Addr)
	}
	for _, a := range cfg.Listen.AllowedNetworks {
		if !slices.ContainsFunc(subnets, func(s netip.Prefix) bool { return s.Bits() <= a.Bits() && s.Contains(a.Addr()) }) {
			t.Errorf("%s: allowed_networks %s is not within the compose subnets %v", configSrc, a, subnets)
		}
	}

	hc := yamlStrings(t, "services.tlsrelay.healthcheck.test", dig(relay, "healthcheck", "test"))
	if len(hc) < 2 || hc[0] != "CMD" {
		t.Fatalf("services.tlsrelay.healthcheck.test = %q, want [CMD, ...] (no shell in the image)", hc)
	}
	checkCommand(t, "compose healthcheck", hc[1:])
	if got := argAfter(hc, "-dir"); got != cfg.Queue.Dir {
		t.Errorf("compose healthcheck -dir %q, want queue.dir %q", got, cfg.Queue.Dir)
	}
	if dig(compose, "services", "app", "depends_on", "tlsrelay", "condition") != "service_healthy" {
		t.Error("services.app.depends_on.tlsrelay.condition: want service_healthy, so the app starts once the relay is ready")
	}
}

func yamlMap(v any) map[string]any { m, _ := v.(map[string]any); return m }

func yamlHasKey(v any, k string) bool { _, ok := yamlMap(v)[k]; return ok }

// ---- Kubernetes ---------------------------------------------------------------

func TestDeployKubernetes(t *testing.T) {
	const file = "deploy/kubernetes/tlsrelay.yaml"
	byKind := map[string]map[string]any{}
	for _, d := range yamlDocs(t, file) {
		kind := digString(d, "kind")
		if kind == "Secret" {
			t.Errorf("%s: a Secret in the manifest would hold the credentials in the repository; create it with kubectl create secret", file)
		}
		byKind[kind] = d
	}
	cm, pvc, dep := byKind["ConfigMap"], byKind["PersistentVolumeClaim"], byKind["Deployment"]
	if cm == nil || pvc == nil || dep == nil {
		t.Fatalf("%s: want a ConfigMap, a PersistentVolumeClaim and a Deployment, got %v", file, sortedKeys(byKind))
	}
	pod := dig(dep, "spec", "template", "spec")

	var relay any
	for _, c := range digList(pod, "initContainers") {
		if digString(c, "name") == "tlsrelay" {
			relay = c
		}
	}
	if relay == nil {
		t.Fatal("no initContainers[name=tlsrelay]: want a native sidecar")
	}
	if digString(relay, "restartPolicy") != "Always" {
		t.Error("initContainers[tlsrelay].restartPolicy: want Always (a native sidecar; otherwise the pod waits for it to exit)")
	}

	// Volumes and mounts.
	volumes := map[string]any{}
	for _, v := range digList(pod, "volumes") {
		volumes[digString(v, "name")] = v
	}
	mounts := map[string]string{} // mountPath -> volume name
	for _, m := range digList(relay, "volumeMounts") {
		mounts[digString(m, "mountPath")] = digString(m, "name")
	}
	argv := yamlStrings(t, "tlsrelay.args", dig(relay, "args"))
	checkCommand(t, "kubernetes tlsrelay args", argv)
	configPath := argAfter(argv, "-config")
	cmVolume := volumes[mounts[filepath.Dir(configPath)]]
	if digString(cmVolume, "configMap", "name") != digString(cm, "metadata", "name") {
		t.Fatalf("-config %s is not in a mount of ConfigMap %s", configPath, digString(cm, "metadata", "name"))
	}
	src := digString(cm, "data", filepath.Base(configPath))
	if src == "" {
		t.Fatalf("ConfigMap has no data.%s", filepath.Base(configPath))
	}

	// Variables the container sets; a password must come from a Secret.
	var env []string
	fromSecret := map[string]string{}
	for _, e := range digList(relay, "env") {
		env = append(env, digString(e, "name"))
		if s := digString(e, "valueFrom", "secretKeyRef", "name"); s != "" {
			fromSecret[digString(e, "name")] = s
		}
	}
	// Secret files: the items of the secret volume mounted for the relay.
	var secretDir, secretName string
	var secretFiles []string
	for path, vol := range mounts {
		if s := dig(volumes[vol], "secret"); s != nil {
			secretDir, secretName = path+"/", digString(s, "secretName")
			for _, it := range digList(s, "items") {
				secretFiles = append(secretFiles, digString(it, "path"))
			}
		}
	}
	if secretDir == "" || len(secretFiles) == 0 {
		t.Fatal("no secret volume with items mounted in the tlsrelay container: credentials come as files from a Secret")
	}
	for v, s := range fromSecret {
		if s != secretName {
			t.Errorf("env %s comes from Secret %s, the files from Secret %s: want one Secret", v, s, secretName)
		}
	}
	cfg, looked := deployedConfig{name: file + " (ConfigMap relay.yaml)", src: src, env: env, secretDir: secretDir, secretFiles: secretFiles}.parse(t)
	for _, p := range cfg.Providers {
		if strings.HasPrefix(p.Auth.PasswordFrom, "env ") {
			t.Errorf("provider %s: the password comes from %s; use password_file from the Secret", p.Name, p.Auth.PasswordFrom)
		}
	}
	for _, k := range env {
		if !slices.Contains(looked, k) {
			t.Errorf("tlsrelay env %s: the config does not use it", k)
		}
	}

	// Same pod, same network namespace: loopback only.
	if !isLoopbackAddr(t, cfg.Listen.Addr) {
		t.Errorf("listen.addr %s: want loopback (the app is in the same pod)", cfg.Listen.Addr)
	}
	if a := cfg.Admin.Addr; a != "" && !isLoopbackAddr(t, a) {
		t.Errorf("admin.addr %s: keep it on loopback (the queue API has no authentication)", a)
	}

	// The spool: a PersistentVolumeClaim, mounted at queue.dir.
	spool := volumes[mounts[cfg.Queue.Dir]]
	if spool == nil {
		t.Fatalf("queue.dir %s is not a volume mount of the tlsrelay container", cfg.Queue.Dir)
	}
	if digString(spool, "persistentVolumeClaim", "claimName") != digString(pvc, "metadata", "name") {
		t.Errorf("the spool volume is %v, want the PersistentVolumeClaim %s (an emptyDir dies with the pod, and the mail in it)", spool, digString(pvc, "metadata", "name"))
	}

	// Probes and preStop: exec (no HTTP on the pod IP), on queue.dir.
	for _, probe := range []string{"readinessProbe", "startupProbe"} {
		cmd := yamlStrings(t, probe, dig(relay, probe, "exec", "command"))
		checkCommand(t, "kubernetes "+probe, cmd)
		if !slices.Contains(cmd, "health") || argAfter(cmd, "-dir") != cfg.Queue.Dir {
			t.Errorf("%s: %q, want tlsrelay health -dir %s", probe, cmd, cfg.Queue.Dir)
		}
	}
	pre := yamlStrings(t, "preStop", dig(relay, "lifecycle", "preStop", "exec", "command"))
	checkCommand(t, "kubernetes preStop", pre)
	if !slices.Contains(pre, "flush") || !slices.Contains(pre, "-wait") || argAfter(pre, "-dir") != cfg.Queue.Dir {
		t.Errorf("preStop: %q, want tlsrelay queue flush -dir %s -wait -timeout D", pre, cfg.Queue.Dir)
	}
	flushTimeout, err := time.ParseDuration(argAfter(pre, "-timeout"))
	if err != nil {
		t.Errorf("preStop -timeout: %v", err)
	}
	grace, _ := dig(pod, "terminationGracePeriodSeconds").(int)
	if time.Duration(grace)*time.Second <= flushTimeout {
		t.Errorf("terminationGracePeriodSeconds %d: want more than the preStop flush timeout %s, plus the drain", grace, flushTimeout)
	}

	// Security context.
	if dig(pod, "securityContext", "runAsNonRoot") != true || dig(pod, "securityContext", "fsGroup") == nil {
		t.Errorf("pod securityContext: want runAsNonRoot: true and an fsGroup (so the non-root relay can write the volume), got %v", dig(pod, "securityContext"))
	}
	sc := dig(relay, "securityContext")
	if dig(sc, "readOnlyRootFilesystem") != true || dig(sc, "allowPrivilegeEscalation") != false ||
		!slices.Contains(digList(sc, "capabilities", "drop"), any("ALL")) {
		t.Errorf("tlsrelay securityContext: want readOnlyRootFilesystem, no privilege escalation and capabilities drop [ALL], got %v", sc)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// ---- systemd --------------------------------------------------------------------

// readUnit parses a systemd unit file as INI lines: section.Key -> values
// (a key may repeat). Comments and blank lines are skipped.
func readUnit(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	unit := map[string][]string{}
	section := ""
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: want Key=Value inside a [Section], got %q", path, i+1, line)
			}
			unit[section+"."+strings.TrimSpace(k)] = append(unit[section+"."+strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return unit
}

func TestDeploySystemd(t *testing.T) {
	const file = "deploy/systemd/tlsrelay.service"
	unit := readUnit(t, file)
	one := func(key string) string {
		if v := unit["Service."+key]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}
	for key, want := range map[string]string{
		"Type": "simple", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
		"PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
		"ProtectKernelModules": "yes", "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "RestrictNamespaces": "yes",
		"LockPersonality": "yes", "MemoryDenyWriteExecute": "yes", "CapabilityBoundingSet": "",
		"KillSignal": "SIGTERM", "StateDirectory": "tlsrelay", "ConfigurationDirectory": "tlsrelay",
	} {
		if v, ok := unit["Service."+key]; !ok || one(key) != want {
			t.Errorf("%s: %s=%q, want %q", file, key, v, want)
		}
	}
	if !slices.Contains(unit["Service.SystemCallFilter"], "@system-service") {
		t.Errorf("%s: SystemCallFilter=%q, want @system-service among them", file, unit["Service.SystemCallFilter"])
	}
	if one("DynamicUser") != "yes" && one("User") == "" {
		t.Errorf("%s: want DynamicUser=yes or a User=", file)
	}
	if stop, err := strconv.Atoi(one("TimeoutStopSec")); err != nil || stop < 60 {
		t.Errorf("%s: TimeoutStopSec=%q, want at least 60 (drain 30s + deliveries 30s)", file, one("TimeoutStopSec"))
	}
	if r := one("ExecReload"); !strings.Contains(r, "-HUP") {
		t.Errorf("%s: ExecReload=%q, want it to send SIGHUP (tlsrelay reloads on SIGHUP)", file, r)
	}
	argv := strings.Fields(one("ExecStart"))
	if len(argv) == 0 || !filepath.IsAbs(argv[0]) {
		t.Fatalf("%s: ExecStart=%q, want an absolute path to tlsrelay", file, one("ExecStart"))
	}
	checkCommand(t, "systemd ExecStart", argv)
	configPath := argAfter(argv, "-config")
	if filepath.Dir(configPath) != "/etc/"+one("ConfigurationDirectory") {
		t.Errorf("ExecStart -config %s, want it in /etc/%s (ConfigurationDirectory)", configPath, one("ConfigurationDirectory"))
	}

	// The example relay.yaml: secret files from LoadCredential=, at the fixed
	// path systemd gives them (no variable expansion in relay.yaml).
	var creds []string
	for _, lc := range unit["Service.LoadCredential"] {
		name, _, _ := strings.Cut(lc, ":")
		creds = append(creds, name)
	}
	if len(creds) == 0 {
		t.Errorf("%s: no LoadCredential=: secrets come as credentials", file)
	}
	src, err := os.ReadFile("deploy/systemd/relay.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// env nil: the variables come from the admin's EnvironmentFile, which
	// the README must show instead.
	cfg, looked := deployedConfig{name: "deploy/systemd/relay.yaml", src: string(src),
		secretDir: "/run/credentials/" + filepath.Base(file) + "/", secretFiles: creds}.parse(t)
	readme, err := os.ReadFile("deploy/systemd/README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range looked {
		if !strings.Contains(string(readme), k+"=") {
			t.Errorf("deploy/systemd/README.md does not show how to set %s (in the EnvironmentFile)", k)
		}
	}
	if !strings.HasPrefix(cfg.Queue.Dir, "/var/lib/"+one("StateDirectory")+"/") {
		t.Errorf("queue.dir %s, want it under /var/lib/%s (StateDirectory, the only writable place)", cfg.Queue.Dir, one("StateDirectory"))
	}
	if !isLoopbackAddr(t, cfg.Listen.Addr) {
		t.Errorf("listen.addr %s: want loopback in the example", cfg.Listen.Addr)
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
	more, _ := filepath.Glob("admin/*.go")
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
	up := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	spool := t.TempDir()
	r := startRelay(t, relayConfig(t, up, "starttls", spool))
	r.send(t, "From: <app@example.com>\r\nTo: <a@example.org>\r\nSubject: deploy test\r\n\r\nhello\r\n", "a@example.org")
	waitMessages(t, up, 1)
	r.waitQueue(t, "the queue to empty", queueEmpty)
	code, text := get(t, spool, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
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
