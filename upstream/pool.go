package upstream

// Connection reuse.
//
// A delivery that ends with the session in step (delivered, recipients
// refused one by one, or a reply to MAIL or DATA other than 421) and set up
// as the policy says (TLS verified, AUTH done) sends RSET and, if the server
// answers 250, parks its connection in the pool instead of saying QUIT. The
// next delivery to the same provider takes the most recently parked one and
// goes straight to MAIL FROM: the TLS and AUTH checks were made when the
// connection was set up, and its TLS state (Result.TLS) is kept with it. A
// connection idle for longer than a second is first checked with NOOP
// (within the provider's command timeout); one that does not answer it is closed and the
// next one is tried, then a new one dialled. One parked more recently is
// not: under load that NOOP was a fifth round trip per message, and a
// connection that died meanwhile is found out by MAIL FROM just as well
// (below).
//
// Never twice: when a reused connection fails before the server accepted
// MAIL FROM (no reply, or 421), the attempt goes on over a new connection;
// once MAIL FROM is accepted, a failure ends the attempt as on any
// connection, and the queue retries later.
//
// Never after a fault: no connection is parked after a 421 (in any reply), a
// failure without a reply (timeout, reset, protocol error), a cancelled
// context, or its max_messages_per_connection-th MAIL; nor after Close.
//
// Bounds: each parked connection has a timer that says QUIT and closes it
// after the provider's idle_timeout. Nothing reads a parked connection (the
// next delivery sets its deadlines); a server that closed it is
// found out by NOOP. The queue runs at most max_connections deliveries to a
// provider at once, and a delivery dials only when no connection is idle,
// so a provider never has more connections, idle or busy, than that; the
// pool also refuses to hold more than max_connections idle ones, for
// callers other than the queue.

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/textproto"
	"slices"
	"sync"
	"time"

	"github.com/tlsrelay/tlsrelay/policy"
)

// defaultIdleTimeout is the provider's idle_timeout when it has none (a
// Provider built by hand; policy fills in the same default).
const defaultIdleTimeout = 30 * time.Second

// defaultNoopAfter: a connection idle for longer than this is checked with
// NOOP before it is reused.
const defaultNoopAfter = time.Second

// pool holds the idle connections of a Client, per provider. The zero value
// is ready to use.
type pool struct {
	mu     sync.Mutex
	idle   map[string][]*session // by provider, the most recently parked last
	closed bool                  // Close was called: park nothing more
	wg     sync.WaitGroup        // idle timers saying QUIT
}

// maxMessages is p's max_messages_per_connection; 0 (a Provider built by
// hand) means one message per connection, as before reuse existed.
func maxMessages(p *policy.Provider) int { return max(p.MaxMessagesPerConnection, 1) }

func idleTimeout(p *policy.Provider) time.Duration {
	if p.IdleTimeout > 0 {
		return p.IdleTimeout
	}
	return defaultIdleTimeout
}

// park adds s to provider's idle connections and starts its idle timer. It
// returns false, and keeps nothing, after Close or when max_connections
// connections are idle already.
func (pl *pool) park(p *policy.Provider, name string, s *session) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.closed || (p.MaxConnections > 0 && len(pl.idle[name]) >= p.MaxConnections) {
		return false
	}
	if pl.idle == nil {
		pl.idle = map[string][]*session{}
	}
	pl.idle[name] = append(pl.idle[name], s)
	s.parked = time.Now()
	s.timer = time.AfterFunc(idleTimeout(p), func() { pl.expire(name, s) })
	return true
}

// noopAfter is how long a connection may have been idle and still go
// straight to MAIL FROM when reused, without a NOOP first.
func (c *Client) noopAfter() time.Duration {
	if c.noopIdle != 0 {
		return c.noopIdle
	}
	return defaultNoopAfter
}

// take removes and returns provider's most recently parked connection, or
// nil if none is idle.
func (pl *pool) take(name string) *session {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	list := pl.idle[name]
	if len(list) == 0 {
		return nil
	}
	s := list[len(list)-1]
	list[len(list)-1] = nil
	pl.idle[name] = list[:len(list)-1]
	s.timer.Stop() // if it fired already, expire finds s gone and leaves it
	s.timer = nil
	return s
}

// expire closes s, idle for too long, unless a delivery took it meanwhile.
func (pl *pool) expire(name string, s *session) {
	pl.mu.Lock()
	list := pl.idle[name]
	i := slices.Index(list, s)
	if i < 0 || pl.closed {
		pl.mu.Unlock()
		return
	}
	pl.idle[name] = slices.Delete(list, i, i+1)
	pl.wg.Add(1)
	pl.mu.Unlock()
	defer pl.wg.Done()
	s.quit()
}

// close parks nothing more and closes every idle connection, saying QUIT on
// each (at once, each bounded by quitTimeout).
func (pl *pool) close() { pl.drain(true) }

// drain closes every idle connection; with forever, it also parks nothing
// more.
func (pl *pool) drain(forever bool) {
	pl.mu.Lock()
	pl.closed = pl.closed || forever
	var all []*session
	for name, list := range pl.idle {
		for _, s := range list {
			s.timer.Stop()
			all = append(all, s)
		}
		delete(pl.idle, name)
	}
	pl.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.quit()
		}()
	}
	wg.Wait()
	pl.wg.Wait()
}

// quit says QUIT on an idle connection, briefly, and closes it.
func (s *session) quit() {
	s.conn.limit("", time.Time{}, 0) // no attempt's deadline: quitTimeout only
	s.conn.expect("reply to QUIT", quitTimeout)
	s.sc.Quit() // best effort
	s.raw.Close()
}

// Close closes the idle connections (QUIT, then close), waiting at most
// about 5s, and keeps any connection from being parked afterwards: a
// Deliver after Close works, over a connection of its own. Call it once
// nothing delivers any more (after the queue has stopped). It always
// returns nil.
func (c *Client) Close() error {
	c.pool.close()
	return nil
}

// idleCount returns how many connections to provider are idle (for tests).
func (c *Client) idleCount(provider string) int {
	c.pool.mu.Lock()
	defer c.pool.mu.Unlock()
	return len(c.pool.idle[provider])
}

// reuse takes an idle connection to the provider that answers NOOP with
// 250, closing the ones that do not. It returns false if there is none.
func (d *attempt) reuse() bool {
	for d.ctx.Err() == nil {
		s := d.c.pool.take(d.name)
		if s == nil {
			return false
		}
		if s.prov != d.p {
			go s.quit() // set up under a policy that a reload replaced
			continue
		}
		d.adopt(s)
		if time.Since(s.parked) <= d.c.noopAfter() {
			d.log.Debug("upstream connection reused", "messages", d.msgs, "tls", d.tlsInfo)
			return true
		}
		d.conn.expect("reply to NOOP", d.t.Command)
		err := d.smtp.check(d.sc.Noop())
		if err == nil {
			d.log.Debug("upstream connection reused", "messages", d.msgs, "tls", d.tlsInfo)
			return true
		}
		d.log.Debug("idle upstream connection is gone; closing it", "error", cleanText(err.Error()))
		d.discard()
	}
	return false
}

// adopt makes s the delivery's session: under the attempt's deadline, and
// closed if ctx ends.
func (d *attempt) adopt(s *session) {
	d.session = *s
	d.conn.limit(d.endWhat, d.end, d.endAfter)
	raw := d.raw
	d.stop = context.AfterFunc(d.ctx, func() { raw.Close() })
}

// discard closes the delivery's session without a word and forgets it, so
// that a new one can be dialled.
func (d *attempt) discard() {
	d.stop()
	d.raw.Close()
	d.session, d.stop, d.mailOK, d.broken = session{}, nil, false, false
}

// redial reports whether err, from a reused connection, lets the attempt go
// on over a new one: only when the server has not accepted MAIL FROM (so
// nothing can be delivered twice) and the failure says that the connection
// is gone (no reply, or 421), not that the server refused the sender.
func (d *attempt) redial(err error) bool {
	var e *Error
	return err != nil && !d.mailOK && d.ctx.Err() == nil && errors.As(err, &e) &&
		e.Op == "mail" && !e.Perm && (e.Code == 0 || e.Code == 421)
}

// release ends the delivery's use of its connection: parked for the next
// delivery when it may be reused, else closed (after QUIT if the session is
// in step). A transaction that did not end with an accepted DATA (refused
// recipients, a refused MAIL or DATA) is reset first, and the connection
// kept only if RSET answers 250; after an accepted DATA the transaction is
// over already, and an RSET would only cost a round trip per message.
func (d *attempt) release(err error) {
	if d.parkable(err) {
		var rerr error
		if !d.txnDone || err != nil {
			rerr = d.rset()
		}
		if rerr != nil {
			d.log.Debug("upstream connection not kept: RSET failed", "error", cleanText(rerr.Error()))
			d.sc = nil // no QUIT either
		} else if d.stop() {
			s := d.session
			if d.c.pool.park(d.p, d.name, &s) {
				d.log.Debug("upstream connection kept for reuse", "messages", d.msgs)
				return
			}
		}
	}
	d.close(err)
}

// parkable reports whether the connection may serve another message after
// this delivery ended with err: set up as the policy says, under its
// max_messages_per_connection, never after a 421, and the session in step
// (no error, or a reply to MAIL or DATA; RCPT replies are per recipient).
func (d *attempt) parkable(err error) bool {
	if !d.ready || d.broken || d.msgs >= maxMessages(d.p) || d.ctx.Err() != nil {
		return false
	}
	if err == nil {
		return true
	}
	var e *Error
	return errors.As(err, &e) && (e.Op == "mail" || e.Op == "data") &&
		e.Code >= 400 && e.Code < 600 && e.Code != 421
}

// rset sends RSET and reads the reply itself, bounded by quitTimeout (the
// outcome of the delivery is known: a silent server must not hold the
// worker). go-smtp's Client.Reset cannot be used: it makes the client say
// EHLO again before its next command. go-smtp has read nothing beyond the
// last reply (replies to pipelined commands are all read, or the connection
// is not reused: pipeline.go), and the reply to RSET is read a byte
// at a time, so that nothing after it is taken from go-smtp's reader either.
func (d *attempt) rset() error {
	d.conn.expect("reply to RSET", quitTimeout)
	if _, err := io.WriteString(d.smtp, "RSET\r\n"); err != nil {
		return err
	}
	r := textproto.NewReader(bufio.NewReaderSize(byteReader{d.smtp}, 16))
	_, _, err := r.ReadResponse(250)
	return d.smtp.check(err)
}

// byteReader reads at most one byte at a time.
type byteReader struct{ r io.Reader }

func (b byteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return b.r.Read(p)
}
