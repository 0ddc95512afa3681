package queue

import (
	"time"

	"github.com/tlsrelay/tlsrelay/delivery"
)

// Provider recovery.
//
// When a provider is down, every message for it is deferred and waits out
// its backoff (30 s, then 1 m, 2 m ... by default), so after an outage the
// queue drained at the pace of those schedules, not at the rate the
// provider takes mail: 10,000 messages queued during an outage took 36 s
// after the provider came back on the bench machine, most of it waiting.
// So the queue remembers which providers failed their last attempt, and the
// first delivery that succeeds after that makes every message waiting for
// that provider due now, as `tlsrelay queue flush` would. Concurrency stays
// within the provider's max_connections and rate; a message that fails
// again is deferred with its backoff grown as usual; and a provider is
// recovered at most once per queue.retry.initial, so one that flaps (a
// success, a failure, a success ...) does not have the whole queue retried
// at each flap. The schedule changes only in memory, as with RetryAll:
// after a restart the saved one applies.

// noteOutcome records whether an attempt at provider reached it: failed
// (every recipient deferred with a temporary error) or delivered (at least
// one accepted). It returns true when a delivery follows a failure, unless
// the provider was recovered less than queue.retry.initial ago.
func (q *Queue) noteOutcome(provider string, rs []delivery.Result, now time.Time) (recovered bool) {
	delivered, failed := false, len(rs) > 0
	for _, r := range rs {
		if r.Err == nil {
			delivered = true
		}
		if !delivery.Temporary(r.Err) {
			failed = false
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.failing == nil {
		q.failing, q.recovered = map[string]bool{}, map[string]time.Time{}
	}
	switch {
	case failed:
		q.failing[provider] = true
	case delivered && q.failing[provider]:
		delete(q.failing, provider)
		if last, ok := q.recovered[provider]; ok && now.Sub(last) < q.opts.Retry.Initial {
			return false
		}
		q.recovered[provider] = now
		return true
	}
	return false
}

// recoverProvider makes every idle message with a recipient waiting for provider
// due now, and says how many it touched.
func (q *Queue) recoverProvider(provider string) {
	q.mu.Lock()
	n := 0
	for _, e := range q.items {
		if e.busy || !waitsFor(e.item, provider) {
			continue
		}
		q.retryLocked(e)
		n++
	}
	if n > 0 {
		q.notifyLocked()
	}
	q.mu.Unlock()
	if n > 0 {
		q.log.Info("provider is back; messages waiting for it are due now", "provider", provider, "messages", n)
	}
}

// waitsFor reports whether an unfinished recipient of it is to go to
// provider next.
func waitsFor(it *Item, provider string) bool {
	for _, r := range it.Rcpts {
		if !r.Status.Final() && r.Index < len(r.Route) && r.Route[r.Index] == provider {
			return true
		}
	}
	return false
}
