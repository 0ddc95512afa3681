package main

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/policy"
)

// The bench rig's templates (docs/benchmarks.md's commands) load, for every
// upstream TLS mode the rig gives them, after the substitution the rig's cmd relay
// does: every ${BENCH_...} replaced.
func TestBenchTemplatesLoad(t *testing.T) {
	kp, err := smtptest.SelfSigned("localhost")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(ca, kp.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`\$\{(BENCH_[A-Z_]+)\}`)
	for _, c := range []struct{ tmpl, mode string }{
		{"tlsrelay.yaml.tmpl", "starttls"},
		{"tlsrelay-noauth.yaml.tmpl", "none"},
		{"tlsrelay-noauth.yaml.tmpl", "starttls"},
		{"tlsrelay-noauth.yaml.tmpl", "implicit"},
	} {
		vars := map[string]string{
			"BENCH_LISTEN": "127.0.0.1:12025", "BENCH_MAX_MSG": "33554432", "BENCH_SPOOL": filepath.Join(dir, "spool"),
			"BENCH_UPSTREAM_HOST": "127.0.0.1", "BENCH_UPSTREAM_PORT": "12587", "BENCH_UPSTREAM_TLS": c.mode,
			"BENCH_UPSTREAM_CA": ca, "BENCH_UPSTREAM_USER": "bench",
		}
		src, err := os.ReadFile(filepath.Join("bench", c.tmpl))
		if err != nil {
			t.Fatal(err)
		}
		out := name.ReplaceAllStringFunc(string(src), func(m string) string {
			v, ok := vars[name.FindStringSubmatch(m)[1]]
			if !ok {
				t.Errorf("%s: no value for %s", c.tmpl, m)
			}
			return v
		})
		env := func(k string) (string, bool) { return "bench-secret", k == "BENCH_UPSTREAM_PASS" }
		cfg, err := policy.Parse(c.tmpl, []byte(out), env)
		if err != nil {
			t.Errorf("%s with tls mode %s:\n%v", c.tmpl, c.mode, err)
			continue
		}
		if p := cfg.Providers["sink"]; p == nil || p.MaxConnections != 8 || cfg.Queue.Workers != 8 {
			t.Errorf("%s: want provider sink with 8 connections and 8 workers, got %+v, workers %d", c.tmpl, p, cfg.Queue.Workers)
		}
	}
}
