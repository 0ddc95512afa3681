package relay

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestDisallowedNetwork(t *testing.T) {
	ts := startServer(t, func(o *Options) {
		o.Listen.AllowedNetworks = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	})
	c := dial(t, ts.addr)
	c.expect("554 5.7.1 relay.test access denied")
	c.expectEOF()
	if logs := ts.logs.String(); !strings.Contains(logs, "msg=rejected code=554") || !strings.Contains(logs, "client=127.0.0.1") {
		t.Errorf("no rejected event:\n%s", logs)
	}
}

func TestMaxConnections(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.Listen.MaxConnections = 1 })
	a := dial(t, ts.addr)
	a.expect("220 ")
	b := dial(t, ts.addr)
	b.expect("421 4.7.0 relay.test too many connections, try again later")
	b.expectEOF()

	// The slot is released before the server closes the socket, so once a
	// has seen EOF a new client gets in.
	a.cmd("QUIT", "221 ")
	a.expectEOF()
	c := dial(t, ts.addr)
	c.hello()
}

// TestReadTimeoutInData: go-smtp's ReadTimeout is one deadline for the whole
// DATA (G10). The guard answers 421 4.4.2, closes, and nothing is queued.
func TestReadTimeoutInData(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.Listen.ReadTimeout = 300 * time.Millisecond })
	c := dial(t, ts.addr)
	c.hello()
	c.envelope("a@example.com", "b@example.net")
	c.send("Subject: x\r\n\r\npart of the body") // and then nothing
	c.expect("421 4.4.2 relay.test timeout")
	c.expectEOF()
	if m := ts.spool.messages(); len(m) != 0 {
		t.Errorf("spool = %q, want nothing", m)
	}
	if logs := ts.logs.String(); strings.Count(logs, "msg=rejected") != 1 || !strings.Contains(logs, "code=421") {
		t.Errorf("want one rejected event with code 421:\n%s", logs)
	}
}

func TestIdleTimeout(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.Listen.ReadTimeout = 300 * time.Millisecond })
	c := dial(t, ts.addr)
	c.hello()
	c.expect("421 4.4.2 ")
	c.expectEOF()
}

// TestShutdownDrains: during the drain, new clients get 421 4.3.2, an open
// transaction finishes, and Shutdown returns once it is done.
func TestShutdownDrains(t *testing.T) {
	ts := startServer(t, nil)
	a := dial(t, ts.addr)
	a.hello()
	a.cmd("MAIL FROM:<a@example.com>", "250 ")
	a.cmd("RCPT TO:<b@example.net>", "250 ")
	idle := dial(t, ts.addr)
	idle.hello()

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		shut <- ts.Shutdown(ctx)
	}()

	// The idle session is told at once; after that, draining is certain.
	idle.expect("421 4.3.2 relay.test shutting down")
	idle.expectEOF()
	b := dial(t, ts.addr)
	b.expect("421 4.3.2 relay.test shutting down, try again later")
	b.expectEOF()

	a.cmd("DATA", "354 ")
	a.send("Subject: x\r\n\r\nlast one\r\n.\r\n")
	a.expect("250 2.0.0 queued as id-1")
	a.expect("421 4.3.2 ") // asked for its next command
	a.expectEOF()

	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown = %v", err)
		}
	case <-time.After(testWait):
		t.Fatal("Shutdown did not return after the last session ended")
	}
	if m := ts.spool.messages(); len(m) != 1 {
		t.Errorf("spool = %q, want the message finished during the drain", m)
	}
}

// TestShutdownMailWhileDraining: a transaction that ends during the drain
// ends the session: a pipelined MAIL gets 421 4.3.2 from Session.Mail (or
// from the guard, if it arrives in a read of its own).
func TestShutdownMailWhileDraining(t *testing.T) {
	ts := startServer(t, nil)
	a := dial(t, ts.addr)
	a.hello()
	a.cmd("MAIL FROM:<a@example.com>", "250 ")
	idle := dial(t, ts.addr)
	idle.hello()
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		shut <- ts.Shutdown(ctx)
	}()
	idle.expect("421 4.3.2 ") // draining has begun
	a.send("RSET\r\nMAIL FROM:<a@example.com>\r\n")
	a.expect("250 ")
	a.expect("421 4.3.2 ")
	a.expectEOF()
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown = %v", err)
		}
	case <-time.After(testWait):
		t.Fatal("Shutdown did not return")
	}
}

// TestShutdownForces: when ctx ends first, open sessions are closed and
// Shutdown returns the context's error.
func TestShutdownForces(t *testing.T) {
	ts := startServer(t, nil)
	a := dial(t, ts.addr)
	a.hello()
	a.envelope("a@example.com", "b@example.net")
	a.send("Subject: x\r\n\r\nhalf a mess")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := ts.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
	}
	a.expectEOF()
	if m := ts.spool.messages(); len(m) != 0 {
		t.Errorf("spool = %q, want nothing", m)
	}
}
