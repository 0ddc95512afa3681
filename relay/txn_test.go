package relay

import (
	"errors"
	"net"
	"testing"
	"time"
)

// quiet checks that the server sends nothing on c for a moment: a reply
// that should still be held back. (A wrong early reply arrives at once; the
// window only has to be long enough for a loopback round trip.)
func (c *client) quiet(window time.Duration) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(window))
	line, err := c.r.ReadString('\n')
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("want no reply yet, got %q, %v", line, err)
	}
	c.conn.SetReadDeadline(time.Now().Add(testWait))
}

// With one slot, a second MAIL FROM waits until the first transaction ends,
// whichever way it ends, and the slot is handed on each time.
func TestTransactionSlotsPaceSenders(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.Listen.MaxTransactions = 1 })
	a, b := dial(t, ts.addr), dial(t, ts.addr)
	a.hello()
	b.hello()

	a.cmd("MAIL FROM:<a@example.com>", "250 ")
	b.send("MAIL FROM:<b@example.com>\r\n")
	b.quiet(200 * time.Millisecond)
	a.cmd("RSET", "250 ") // a's transaction ends: b gets the slot
	b.expect("250 ")

	a.send("MAIL FROM:<a@example.com>\r\n")
	a.quiet(200 * time.Millisecond)
	b.cmd("RCPT TO:<rcpt@example.net>", "250 ")
	b.cmd("DATA", "354 ")
	b.send("Subject: x\r\n\r\nbody\r\n.\r\n")
	b.expect("250 ") // after DATA the slot is given back
	a.expect("250 ")

	c := dial(t, ts.addr)
	c.hello()
	c.send("MAIL FROM:<c@example.com>\r\n")
	c.quiet(200 * time.Millisecond)
	a.conn.Close() // a session that ends gives its slot back too
	c.expect("250 ")
	if n := len(ts.spool.messages()); n != 1 {
		t.Errorf("%d messages queued, want 1", n)
	}
}

// A MAIL FROM waits at most transaction_wait, then goes ahead without a slot.
func TestTransactionWaitIsBounded(t *testing.T) {
	ts := startServer(t, func(o *Options) {
		o.Listen.MaxTransactions = 1
		o.Listen.TransactionWait = 50 * time.Millisecond
	})
	a, b := dial(t, ts.addr), dial(t, ts.addr)
	a.hello()
	b.hello()
	a.cmd("MAIL FROM:<a@example.com>", "250 ")
	start := time.Now()
	b.cmd("MAIL FROM:<b@example.com>", "250 ")
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Errorf("b went ahead after %v, before transaction_wait", waited)
	}
	// b holds no slot: its RSET gives nothing back that a still holds.
	b.cmd("RSET", "250 ")
	c := dial(t, ts.addr)
	c.hello()
	start = time.Now()
	c.cmd("MAIL FROM:<c@example.com>", "250 ")
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Errorf("c got a slot that a still holds (after %v)", waited)
	}
}

// A MAIL FROM that is refused gives back the slot it took; a nested MAIL
// (503) keeps the slot of the open transaction.
func TestRefusedMailGivesSlotBack(t *testing.T) {
	ts := startServer(t, func(o *Options) {
		o.Listen.MaxTransactions = 1
		o.Listen.AllowedSenders = []string{"*@example.com"}
	})
	a, b := dial(t, ts.addr), dial(t, ts.addr)
	a.hello()
	b.hello()
	a.cmd("MAIL FROM:<x@elsewhere.example>", "5")
	b.cmd("MAIL FROM:<b@example.com>", "250 ") // the slot is free at once
	b.cmd("MAIL FROM:<b@example.com>", "503 ")
	a.send("MAIL FROM:<a@example.com>\r\n")
	a.quiet(200 * time.Millisecond) // b still holds it
	b.cmd("RSET", "250 ")
	a.expect("250 ")
}
