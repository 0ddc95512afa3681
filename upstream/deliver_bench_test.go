package upstream

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/delivery"
	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/policy"
)

// BenchmarkDeliver measures one delivery of a 4 KiB message to a local
// STARTTLS upstream that requires AUTH PLAIN: "new-connection" dials, does
// TLS and AUTH for every message (one message per connection, the policy
// default before reuse); "reuse" keeps the connection between deliveries
// (no RSET after an accepted DATA, no NOOP before the next message), as
// max_messages_per_connection allows.
// The fake upstream keeps every message in memory; -benchtime bounds it.
func BenchmarkDeliver(b *testing.B) {
	for _, bc := range []struct {
		name    string
		maxMsgs int
	}{{"starttls-auth/new-connection", 1}, {"starttls-auth/reuse", 1000}} {
		b.Run(bc.name, func(b *testing.B) {
			s := smtptest.Start(b, smtptest.Options{Mode: smtptest.StartTLS, Users: users, AuthRequired: true})
			p := fakeProvider(s, policy.TLSStartTLS, "plain")
			p.MaxConnections, p.MaxMessagesPerConnection, p.IdleTimeout = 1, bc.maxMsgs, time.Minute
			c := &Client{
				Providers: map[string]*policy.Provider{"fake": p},
				HelloName: "relay.test",
				Timeout:   10 * time.Second,
				Log:       slog.New(slog.DiscardHandler),
			}
			b.Cleanup(func() { c.Close() })
			msg := smtptest.Body(4 << 10)
			rcpts := []string{"b@example.net"}
			ctx := context.Background()
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				m := &delivery.Message{ID: "m1", From: "app@example.com", Size: int64(len(msg)), Body: strings.NewReader(msg)}
				if r := c.Deliver(ctx, "fake", m, rcpts); r[0].Err != nil {
					b.Fatal(r[0].Err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(s.Connections())/float64(b.N), "conns/op")
		})
	}
}
