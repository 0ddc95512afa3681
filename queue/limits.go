package queue

import "context"

// Per-provider connection limits, which a reload can change (SetLimits).
//
// Each provider has a count of attempts in flight and its limit, guarded by
// Queue.mu: the scheduler starts no attempt past the limit (sched.go), and
// an attempt for a later group of recipients waits in acquireConn for a
// free slot. A lower limit lets the attempts in flight finish and starts no
// new one until they are under it; a higher one wakes the waiters at once.

type connLimit struct {
	inflight, limit int
	free            chan struct{} // closed and replaced when a slot frees or the limit grows
}

// limitLocked returns provider's limit, made from Options.MaxConnections
// (absent = 4) on first use. Hold q.mu.
func (q *Queue) limitLocked(provider string) *connLimit {
	l := q.limits[provider]
	if l == nil {
		l = &connLimit{limit: maxConns(q.opts.MaxConnections, provider), free: make(chan struct{})}
		q.limits[provider] = l
	}
	return l
}

func maxConns(m map[string]int, provider string) int {
	if n := m[provider]; n > 0 {
		return n
	}
	return 4
}

// wakeLocked tells the attempts waiting for a slot to look again.
func (l *connLimit) wakeLocked() {
	close(l.free)
	l.free = make(chan struct{})
}

// acquireConn takes a slot of provider's limit, waiting for one if needed.
func (q *Queue) acquireConn(ctx context.Context, provider string) error {
	for {
		q.mu.Lock()
		l := q.limitLocked(provider)
		if l.inflight < l.limit {
			l.inflight++
			q.mu.Unlock()
			return nil
		}
		ch := l.free
		q.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// releaseConn gives a slot back and wakes the attempts waiting for one.
// The scheduler looks again when the worker ends (Run's done).
func (q *Queue) releaseConn(provider string) {
	q.mu.Lock()
	l := q.limitLocked(provider)
	l.inflight--
	l.wakeLocked()
	q.mu.Unlock()
}

// SetLimits applies new limits to a running queue, for a configuration
// reload: the number of workers (0 keeps it), each provider's
// max_connections (absent = 4) and rate (absent = none). Attempts in
// flight finish as they started; a rate that did not change keeps its
// schedule.
func (q *Queue) SetLimits(workers int, conns map[string]int, rates map[string]Rate) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if workers > 0 {
		q.opts.Workers = workers
	}
	q.opts.MaxConnections = conns
	for p, l := range q.limits {
		if n := maxConns(conns, p); n != l.limit {
			l.limit = n
			l.wakeLocked()
		}
	}
	pacers := map[string]*pacer{}
	for name, r := range rates {
		p := newPacer(r)
		if old := q.pacers[name]; old != nil && p != nil && old.interval == p.interval {
			p = old
		}
		pacers[name] = p
	}
	q.pacers = pacers
	q.notifyLocked()
}

// workers is how many deliveries may run at once now.
func (q *Queue) workers() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.opts.Workers
}
