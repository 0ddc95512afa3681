package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/admin"
	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/policy"
)

// get fetches path from the relay's control socket.
func get(t *testing.T, spool, path string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://tlsrelay"+path, nil)
	resp, err := admin.NewClient(spool).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of the first sample line that starts with
// name{labels} (or name), or -1.
func metric(text, sample string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestMetricsMoveWithDeliveries scrapes /metrics between deliveries and
// finds the counters moving, with the TLS version and latency recorded.
func TestMetricsMoveWithDeliveries(t *testing.T) {
	up := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	spool := t.TempDir()
	r := startRelay(t, relayConfig(t, up, "starttls", spool))
	r.send(t, trickyBody, "a@example.org")
	waitMessages(t, up, 1)
	r.waitQueue(t, "the queue to empty", queueEmpty)
	_, before := get(t, spool, "/metrics")
	r.send(t, trickyBody, "b@example.org", "c@example.org")
	waitMessages(t, up, 2)
	r.waitQueue(t, "the queue to empty", queueEmpty)
	code, after := get(t, spool, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, c := range []struct {
		sample       string
		before, want float64
	}{
		{"tlsrelay_messages_accepted_total", 1, 2},
		{`tlsrelay_deliveries_total{provider="up"}`, 1, 3},
		{`tlsrelay_delivery_latency_seconds_count{provider="up"}`, 1, 3},
		{`tlsrelay_upstream_tls_total{cipher="TLS_AES_128_GCM_SHA256",provider="up",version="TLS 1.3"}`, 1, 3},
		{"tlsrelay_queue_messages", 0, 0},
	} {
		if b, a := metric(before, c.sample), metric(after, c.sample); b != c.before || a != c.want {
			t.Errorf("%s: %v then %v, want %v then %v", c.sample, b, a, c.before, c.want)
		}
	}
	if v := metric(after, `tlsrelay_upstream_cert_expiry_days{provider="up"}`); v < 300 || v > 366 {
		t.Errorf("cert expiry days = %v, want about a year (the fake's certificate)", v)
	}
}

// TestReadyzQueueThreshold: /readyz is ready with an empty queue, unready
// while the queue is over admin.ready_max_queue, ready again once it drains.
func TestReadyzQueueThreshold(t *testing.T) {
	up := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	up.SetMailErr(func(string) error { return tempFail })
	spool := t.TempDir()
	cfg := relayConfig(t, up, "starttls", spool)
	cfg.Admin.ReadyMaxQueue = 1
	cfg.Admin.Addr = "127.0.0.1:0"
	r := startRelay(t, cfg)
	r.send(t, trickyBody, "a@example.org")
	if code, body := get(t, spool, "/readyz"); code != 200 {
		t.Fatalf("/readyz with 1 queued = %d %q, want 200", code, body)
	}
	r.send(t, trickyBody, "b@example.org")
	code, body := get(t, spool, "/readyz")
	if code != 503 || !strings.Contains(body, "ready_max_queue") {
		t.Fatalf("/readyz with 2 queued = %d %q, want 503 naming ready_max_queue", code, body)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"health", "-dir", spool}, &out, &out); err == nil {
		t.Fatalf("health while over the threshold: nil error, output %q", out.String())
	}
	// The TCP admin endpoint serves the same API.
	resp, err := http.Get("http://" + r.app.AdminAddr() + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("admin.addr /healthz: %v %v", resp, err)
	}
	resp.Body.Close()

	up.SetMailErr(nil)
	if _, err := queueCmd(t, "flush", "-dir", spool, "-wait", "-timeout", "10s"); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if code, body := get(t, spool, "/readyz"); code != 200 {
		t.Fatalf("/readyz after draining = %d %q", code, body)
	}
	out.Reset()
	if err := run(context.Background(), []string{"health", "-dir", spool}, &out, &out); err != nil || !strings.Contains(out.String(), "ready") {
		t.Fatalf("health = %v %q", err, out.String())
	}
	r.stop()
	if err := run(context.Background(), []string{"health", "-dir", spool, "-timeout", "2s"}, &out, &out); err == nil {
		t.Fatal("health with the relay stopped: nil error")
	}
}

// TestAdminAddrPlanes: the daemon wires admin.addr as the monitoring plane,
// and the queue API there only behind admin's token.
func TestAdminAddrPlanes(t *testing.T) {
	up := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	up.SetMailErr(func(string) error { return tempFail })
	for _, token := range []string{"", "tok-for-the-admin-test"} {
		cfg := relayConfig(t, up, "starttls", t.TempDir())
		cfg.Queue.Retry.Initial, cfg.Queue.Retry.Max = time.Hour, time.Hour
		cfg.Admin.Addr = "127.0.0.1:0"
		cfg.Admin.Token = policy.Secret(token)
		r := startRelay(t, cfg)
		id := queuedID(t, r.send(t, trickyBody, "a@example.org"))
		base := "http://" + r.app.AdminAddr()
		call := func(method, path, bearer string) int {
			req, _ := http.NewRequest(method, base+path, nil)
			if bearer != "" {
				req.Header.Set("Authorization", "Bearer "+bearer)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		wantQueue := 404
		if token != "" {
			wantQueue = 401
		}
		if got := call("DELETE", "/queue/"+id, "wrong"); got != wantQueue {
			t.Errorf("token %q: DELETE with a wrong token = %d, want %d", token, got, wantQueue)
		}
		if got := call("POST", "/metrics", ""); got != 405 {
			t.Errorf("POST /metrics = %d, want 405", got)
		}
		if token != "" {
			if got := call("GET", "/queue/"+id, token); got != 200 {
				t.Errorf("GET /queue/ID with the token = %d, want 200", got)
			}
		}
		if _, err := queueCmd(t, "show", "-dir", cfg.Queue.Dir, id); err != nil {
			t.Errorf("token %q: the message is gone: %v", token, err)
		}
		r.stop()
	}
}

// A 0777 spool owned by another user stops `serve` (exit 1 from main) with
// the path, the mode and the fix, before it listens.
func TestServeRefusesForeignSpool(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the spool directory another owner (chown)")
	}
	up := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	spool := filepath.Join(t.TempDir(), "spool")
	os.MkdirAll(spool, 0o700)
	os.Chmod(spool, 0o777)
	if err := os.Chown(spool, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "relay.yaml")
	os.WriteFile(conf, []byte(configYAML(t, up, cfgOpts{spool: spool})), 0o600)
	t.Setenv("UP_PASSWORD", testPassword)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, []string{"serve", "-config", conf}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "owned by uid 65534 with mode 0777") || !strings.Contains(err.Error(), "chown -R") {
		t.Fatalf("serve: %v\n%s", err, out.String())
	}
}
