package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tlsrelay/tlsrelay/delivery"
)

// attempt makes one delivery attempt for a group and records each result.
func (q *Queue) attempt(ctx context.Context, it *Item, g group) {
	rcpts := make([]string, len(g.idx))
	for k, i := range g.idx {
		rcpts[k] = it.Rcpts[i].Addr
	}
	results := q.deliver(ctx, it, g.provider, rcpts)
	now := q.now()
	for k, i := range g.idx {
		q.record(it, i, g.provider, results[k], now)
	}
	if ctx.Err() == nil && q.noteOutcome(g.provider, results, now) {
		q.recoverProvider(g.provider)
	}
}

// deliver calls the delivery.Deliverer within the provider's connection limit and
// always returns one result per recipient.
func (q *Queue) deliver(ctx context.Context, it *Item, provider string, rcpts []string) []delivery.Result {
	fail := func(err error) []delivery.Result {
		rs := make([]delivery.Result, len(rcpts))
		for i := range rs {
			rs[i].Err = err
		}
		return rs
	}
	if err := q.acquireConn(ctx, provider); err != nil {
		return fail(err)
	}
	defer q.releaseConn(provider)
	q.mu.Lock()
	pace := q.pacers[provider]
	q.mu.Unlock()
	if err := pace.take(ctx, q.now()); err != nil {
		return fail(err)
	}
	body, err := q.openBody(it.ID)
	if err != nil {
		return fail(fmt.Errorf("queue: open message body: %w", err))
	}
	defer body.Close()
	q.log.Debug("attempt", "id", it.ID, "provider", provider, "rcpts", len(rcpts))
	msg := &delivery.Message{ID: it.ID, From: it.From, Size: it.Size, Body: body}
	rs := q.d.Deliver(ctx, provider, msg, rcpts)
	if len(rs) != len(rcpts) {
		return fail(fmt.Errorf("queue: deliverer returned %d results for %d recipients", len(rs), len(rcpts)))
	}
	return rs
}

// record applies one recipient's result: delivered, failed for good, moved
// to the next provider of its route, or deferred with backoff once the route
// is exhausted.
func (q *Queue) record(it *Item, i int, provider string, res delivery.Result, now time.Time) {
	r := &it.Rcpts[i]
	r.Attempts++
	defer func() {
		ev := Event{Time: now.UTC(), Rcpt: r.Addr, Provider: provider, Status: r.Status, Code: r.LastCode, Text: r.LastError}
		if r.Status == Delivered {
			ev.Text = res.Reply
		}
		it.addEvent(ev)
	}()
	if res.Err == nil {
		r.Status, r.Provider, r.Reply, r.LastError, r.LastCode = Delivered, provider, res.Reply, "", 0
		q.log.Info("delivered", "id", it.ID, "rcpt", r.Addr, "provider", provider,
			"attempt", r.Attempts, "reply", res.Reply, "tls", res.TLS, "age", now.Sub(it.Arrived))
		return
	}
	r.LastError, r.LastCode = res.Err.Error(), delivery.SMTPCode(res.Err)
	if !delivery.Temporary(res.Err) {
		r.Status = Failed
		q.log.Warn("failed", "id", it.ID, "rcpt", r.Addr, "provider", provider,
			"attempt", r.Attempts, "code", r.LastCode, "error", r.LastError)
		return
	}
	if r.Index+1 < len(r.Route) {
		r.Index++
		r.Status, r.NextAttempt = Pending, now
		q.log.Warn("deferred", "id", it.ID, "rcpt", r.Addr, "provider", provider, "attempt", r.Attempts,
			"code", r.LastCode, "error", r.LastError, "next_provider", r.Route[r.Index])
		return
	}
	r.Index = 0
	round := (r.Attempts + len(r.Route) - 1) / len(r.Route)
	next := now.Add(Backoff(q.opts.Retry, round, q.opts.Rand()))
	if deadline := it.since().Add(q.opts.MaxAge); next.After(deadline) {
		next = deadline // expire on time rather than one long wait late
	}
	r.Status, r.NextAttempt = Deferred, next
	q.log.Warn("deferred", "id", it.ID, "rcpt", r.Addr, "provider", provider, "attempt", r.Attempts,
		"code", r.LastCode, "error", r.LastError, "next_attempt", next.UTC().Format(time.RFC3339))
}

// errExpired is recorded for recipients still undelivered after MaxAge.
var errExpired = errors.New("expired: not delivered within queue.max_age")

// expire fails every recipient not yet final, keeping the last error. It
// reports whether it changed anything.
func (q *Queue) expire(it *Item) (changed bool) {
	for i := range it.Rcpts {
		r := &it.Rcpts[i]
		if r.Status.Final() {
			continue
		}
		r.Status, changed = Failed, true
		msg := fmt.Sprintf("%s (%s)", errExpired, q.opts.MaxAge)
		if r.LastError != "" {
			msg += "; last error: " + r.LastError
		}
		r.LastError = msg
		it.addEvent(Event{Time: q.now().UTC(), Rcpt: r.Addr, Status: Failed, Text: msg})
		q.log.Warn("failed", "id", it.ID, "rcpt", r.Addr, "attempt", r.Attempts, "code", r.LastCode, "error", msg)
	}
	return changed
}
