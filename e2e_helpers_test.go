package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/daemon"
	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/policy"
	"github.com/tlsrelay/tlsrelay/queue"
)

// testPassword is the upstream AUTH password in these tests; a test asserts
// that it never reaches a log line.
const testPassword = "pw-Zq8v-never-logged"

// cfgOpts vary the test configuration: one provider "up", the fake
// upstream, with its CA in a ca_file and AUTH PLAIN as user/testPassword.
type cfgOpts struct {
	mode     string            // tls.mode of "up"; "" = starttls
	spool    string            // queue.dir; "" = a new temporary directory
	addr     string            // listen.addr; "" = 127.0.0.1:0
	listen   []string          // more listen keys, e.g. "line_endings: fix"
	provider []string          // more keys of "up", e.g. "rate: 10/s"
	extra    string            // more top-level YAML
	env      map[string]string // more environment variables
}

// configYAML writes the upstream's CA next to a new config and returns
// the config's YAML.
func configYAML(t *testing.T, up *smtptest.Server, o cfgOpts) string {
	t.Helper()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, up.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if o.mode == "" {
		o.mode = "starttls"
	}
	if o.spool == "" {
		o.spool = filepath.Join(dir, "spool")
	}
	if o.addr == "" {
		o.addr = "127.0.0.1:0"
	}
	indent := func(lines []string, pre string) string {
		var b strings.Builder
		for _, l := range lines {
			b.WriteString(pre + l + "\n")
		}
		return b.String()
	}
	return fmt.Sprintf(`listen:
  addr: %q
  hostname: relay.test
%squeue:
  dir: %q
  retry: {initial: 20ms, max: 100ms, factor: 2, jitter: 0}
providers:
  up:
    host: 127.0.0.1
    port: %d
%s    tls: {mode: %s, server_name: localhost, ca_file: %q}
    auth: {mechanism: plain, username: user, password_env: UP_PASSWORD}
default: [up]
%s`, o.addr, indent(o.listen, "  "), o.spool, up.Port(), indent(o.provider, "    "), o.mode, ca, o.extra)
}

// testConfig parses configYAML with UP_PASSWORD (and o.env) set.
func testConfig(t *testing.T, up *smtptest.Server, o cfgOpts) *policy.Config {
	t.Helper()
	env := func(k string) (string, bool) {
		if k == "UP_PASSWORD" {
			return testPassword, true
		}
		v, ok := o.env[k]
		return v, ok
	}
	cfg, err := policy.Parse("test.yaml", []byte(configYAML(t, up, o)), env)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// relayConfig is testConfig with the upstream's TLS mode and a spool.
func relayConfig(t *testing.T, up *smtptest.Server, mode, spool string) *policy.Config {
	t.Helper()
	return testConfig(t, up, cfgOpts{mode: mode, spool: spool})
}

// startUpstream starts a fake upstream that requires AUTH as user/testPassword.
func startUpstream(t *testing.T, o smtptest.Options) *smtptest.Server {
	t.Helper()
	o.Users = map[string]string{"user": testPassword}
	o.AuthRequired = true
	return smtptest.Start(t, o)
}

// runningRelay is an app serving on a loopback port for one test.
type runningRelay struct {
	addr string
	app  *daemon.Daemon
	logs *smtptest.LogBuffer
	stop func() // stops it and waits; safe to call twice
}

func startRelay(t *testing.T, cfg *policy.Config) *runningRelay {
	t.Helper()
	return startRelayOn(t, cfg, "127.0.0.1:0")
}

// startRelayOn is startRelay listening on addr.
func startRelayOn(t *testing.T, cfg *policy.Config, addr string) *runningRelay {
	t.Helper()
	logs := &smtptest.LogBuffer{}
	a, err := daemon.New(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("daemon.New: %v", err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, l) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("relay stopped with %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Error("relay did not stop within 15s")
			}
		})
	}
	t.Cleanup(func() {
		stop()
		if strings.Contains(logs.String(), testPassword) {
			t.Errorf("the upstream password appears in the relay's log")
		}
	})
	return &runningRelay{addr: l.Addr().String(), app: a, logs: logs, stop: stop}
}

// send sends one message through the relay and returns its reply.
func (r *runningRelay) send(t *testing.T, body string, to ...string) string {
	t.Helper()
	reply, err := sendRaw(r.addr, "app@example.com", to, body)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	return reply
}

// waitQueue waits (at most 10s) until cond holds for the relay's queue.
func (r *runningRelay) waitQueue(t *testing.T, what string, cond func([]queue.Item) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.app.Queue().WaitFor(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v\nqueue: %+v\nlog:\n%s", what, err, r.app.Queue().List(), r.logs)
	}
}

// waitMessages waits (at most 10s) for n messages at the upstream.
func waitMessages(t *testing.T, up *smtptest.Server, n int) []smtptest.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := up.WaitMessages(ctx, n)
	if err != nil {
		t.Fatalf("upstream got %d messages, want %d: %v", len(up.Messages()), n, err)
	}
	return msgs
}

func deferredOnce(items []queue.Item) bool {
	return len(items) == 1 && items[0].Rcpts[0].Status == queue.Deferred && items[0].Rcpts[0].Attempts >= 1
}

func queueEmpty(items []queue.Item) bool { return len(items) == 0 }

// stripReceived removes the relay's Received header (with its folded
// continuation lines) from the front of data.
func stripReceived(t *testing.T, data []byte) []byte {
	t.Helper()
	if !bytes.HasPrefix(data, []byte("Received: ")) {
		t.Fatalf("message does not start with the relay's Received header: %q", data[:min(len(data), 80)])
	}
	rest := data
	for {
		i := bytes.Index(rest, []byte("\r\n"))
		if i < 0 {
			t.Fatalf("unterminated Received header")
		}
		rest = rest[i+2:]
		if len(rest) == 0 || (rest[0] != ' ' && rest[0] != '\t') {
			return rest
		}
	}
}
