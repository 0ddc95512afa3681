package deploy_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/tlsrelay/tlsrelay/admin"
	"github.com/tlsrelay/tlsrelay/daemon"
	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/policy"
	"github.com/tlsrelay/tlsrelay/queue"
)

// relayMetricsAfterOne runs a relay on spool in front of a STARTTLS+AUTH
// fake upstream, delivers one message so that the per-provider families
// have samples, and returns its /metrics as read on the control socket.
func relayMetricsAfterOne(t *testing.T, spool string) string {
	t.Helper()
	const password = "deploy-test-pw"
	up := smtptest.Start(t, smtptest.Options{Mode: smtptest.StartTLS,
		Users: map[string]string{"user": password}, AuthRequired: true})
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, up.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`listen: {addr: "127.0.0.1:0", hostname: relay.test}
queue: {dir: %q, retry: {initial: 20ms, max: 100ms, factor: 2, jitter: 0}}
providers:
  up:
    host: 127.0.0.1
    port: %d
    tls: {mode: starttls, server_name: localhost, ca_file: %q}
    auth: {mechanism: plain, username: user, password_env: UP_PASSWORD}
default: [up]
`, spool, up.Port(), ca)
	cfg, err := policy.Parse("deploy-test.yaml", []byte(src), func(k string) (string, bool) {
		return password, k == "UP_PASSWORD"
	})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	d, err := daemon.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("daemon.New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := daemon.Listen(ctx, cfg.Listen.Addr)
	if err != nil {
		d.Close()
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(rctx, l) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("relay stopped with %v", err)
		}
	}()

	msg := "From: <app@example.com>\r\nTo: <a@example.org>\r\nSubject: deploy test\r\n\r\nhello\r\n"
	c, err := smtp.Dial(l.Addr().String()) // plain SMTP, as a legacy app speaks it
	if err != nil {
		t.Fatal(err)
	}
	c.CommandTimeout, c.SubmissionTimeout = 10*time.Second, 10*time.Second
	if err := c.SendMail("app@example.com", []string{"a@example.org"}, strings.NewReader(msg)); err != nil {
		t.Fatalf("send through the relay: %v", err)
	}
	c.Quit()
	if _, err := up.WaitMessages(ctx, 1); err != nil {
		t.Fatalf("the upstream got no message: %v", err)
	}
	if err := d.Queue().WaitFor(ctx, func(items []queue.Item) bool { return len(items) == 0 }); err != nil {
		t.Fatalf("waiting for the queue to empty: %v", err)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://tlsrelay"+admin.PathMetrics, nil)
	resp, err := admin.NewClient(spool).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", admin.PathMetrics, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s", admin.PathMetrics, resp.Status)
	}
	return string(b)
}
