package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/policy"
)

// TestE2EFailoverToSecondProvider: the route's first provider is down (its
// port refuses connections), so the message goes to the second at once,
// and the log says so.
func TestE2EFailoverToSecondProvider(t *testing.T) {
	primary := startUpstream(t, smtptest.Options{Mode: smtptest.ImplicitTLS})
	backup := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	if err := primary.Down(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caP, caB := filepath.Join(dir, "p.pem"), filepath.Join(dir, "b.pem")
	os.WriteFile(caP, primary.CACertPEM(), 0o600)
	os.WriteFile(caB, backup.CACertPEM(), 0o600)
	src := fmt.Sprintf(`listen: {addr: "127.0.0.1:0", hostname: relay.test}
queue: {dir: %q}
providers:
  primary:
    host: 127.0.0.1
    port: %d
    tls: {mode: implicit, server_name: localhost, ca_file: %q}
    auth: {username: user, password_env: UP_PASSWORD}
  backup:
    host: 127.0.0.1
    port: %d
    tls: {mode: starttls, server_name: localhost, ca_file: %q}
    auth: {username: user, password_env: UP_PASSWORD}
routes:
  - {sender_domain: example.com, providers: [primary, backup]}
`, filepath.Join(dir, "spool"), primary.Port(), caP, backup.Port(), caB)
	cfg, err := policy.Parse("failover.yaml", []byte(src), func(k string) (string, bool) { return testPassword, k == "UP_PASSWORD" })
	if err != nil {
		t.Fatal(err)
	}
	r := startRelay(t, cfg)
	r.send(t, trickyBody, "a@example.org")
	m := waitMessages(t, backup, 1)[0]
	if got := stripReceived(t, m.Data); string(got) != trickyBody {
		t.Fatalf("body changed on the way through the backup")
	}
	r.waitQueue(t, "the queue to empty", queueEmpty)
	logs := r.logs.String()
	if !strings.Contains(logs, "provider=primary") || !strings.Contains(logs, "next_provider=backup") ||
		!strings.Contains(logs, "msg=delivered") {
		t.Fatalf("log does not show the failover:\n%s", logs)
	}
	if len(primary.Messages()) != 0 {
		t.Fatal("the primary, which was down, received the message")
	}
}
