package queue

import (
	"context"
	"sync"
	"time"
)

// Rate is a provider's sending limit: at most N attempts per Per.
type Rate struct {
	N   int
	Per time.Duration
}

// pacer spaces a provider's attempts evenly: one every Per/N. Spacing
// rather than bursts keeps under limits that providers enforce over short
// windows (SES counts per second).
type pacer struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time // no attempt before this
}

func newPacer(r Rate) *pacer {
	if r.N <= 0 || r.Per <= 0 {
		return nil
	}
	return &pacer{interval: r.Per / time.Duration(r.N)}
}

// delay is how long until the next attempt may start; 0 means now.
func (p *pacer) delay(now time.Time) time.Duration {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(p.next.Sub(now), 0)
}

// take claims the next slot and waits for it, or returns ctx's error.
func (p *pacer) take(ctx context.Context, now time.Time) error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	start := p.next
	if start.Before(now) {
		start = now
	}
	p.next = start.Add(p.interval)
	p.mu.Unlock()
	wait := start.Sub(now)
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
