package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/policy"
)

// limitedConfig is testConfig with an implicit-TLS upstream and the
// provider keys in limits added, e.g. "rate: 10/s".
func limitedConfig(t *testing.T, up *smtptest.Server, limits ...string) *policy.Config {
	t.Helper()
	return testConfig(t, up, cfgOpts{mode: "implicit", provider: limits})
}

// waitClosed waits (at most 10s) until the upstream has no open connection.
func waitClosed(t *testing.T, up *smtptest.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := up.WaitOpenConnections(ctx, 0); err != nil {
		t.Fatalf("upstream connections still open: %v", err)
	}
}

// TestE2ERatePacesAndReuses: with rate 10/s the queue starts one attempt
// every 100ms; with max_connections 1 they run one at a time, so all go
// over one upstream connection, which the relay closes when it stops.
func TestE2ERatePacesAndReuses(t *testing.T) {
	up := startUpstream(t, smtptest.Options{Mode: smtptest.ImplicitTLS})
	cfg := limitedConfig(t, up, "rate: 10/s", "max_connections: 1", "max_messages_per_connection: 100", "idle_timeout: 1m")
	const interval = 100 * time.Millisecond
	r := startRelay(t, cfg)
	start := time.Now()
	for i := 1; i <= 3; i++ {
		queuedID(t, r.send(t, numberedBody(i), fmt.Sprintf("rcpt%d@example.org", i)))
	}
	msgs := waitMessages(t, up, 3)
	r.waitQueue(t, "the queue to empty", queueEmpty)

	// Attempt i (from 0) starts no earlier than start + i*interval, and
	// a message is received after its attempt started: a lower bound on
	// each arrival, whatever the attempts' own durations.
	received := make([]time.Time, len(msgs))
	bodies := map[string]int{}
	for i, m := range msgs {
		received[i] = m.Received
		bodies[string(stripReceived(t, m.Data))]++
	}
	for i := 1; i <= 3; i++ {
		if n := bodies[numberedBody(i)]; n != 1 {
			t.Errorf("message %d arrived %d times intact, want once; got %v", i, n, bodies)
		}
	}
	sort.Slice(received, func(i, j int) bool { return received[i].Before(received[j]) })
	for i, at := range received {
		if got, min := at.Sub(start), time.Duration(i)*interval; got < min {
			t.Errorf("message %d received %s after the first was sent, want at least %s (rate 10/s)", i+1, got, min)
		}
	}
	if n := up.Connections(); n != 1 {
		t.Errorf("the upstream saw %d connections for 3 messages, want 1 (reused)", n)
	}
	if n := strings.Count(r.logs.String(), "msg=delivered"); n != 3 {
		t.Errorf("%d delivered events, want 3", n)
	}
	r.stop()
	waitClosed(t, up) // the idle connection, closed at shutdown (idle_timeout is 1m)
}

// numberedBody is a small message that says which one it is.
func numberedBody(n int) string {
	return fmt.Sprintf("From: <app@example.com>\r\nTo: <rcpt%d@example.org>\r\nSubject: paced %d\r\n\r\nmessage %d\r\n", n, n, n)
}
