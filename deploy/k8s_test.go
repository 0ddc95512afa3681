package deploy_test

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

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
