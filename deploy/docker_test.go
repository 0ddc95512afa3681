package deploy_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

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
