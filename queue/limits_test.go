package queue

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/delivery"
)

// heldDeliverer holds every attempt until release is closed, and
// records the most attempts it saw at once.
type heldDeliverer struct {
	fakeDeliverer
	release      chan struct{}
	now, highest atomic.Int32
	started      chan struct{}
}

func (b *heldDeliverer) Deliver(ctx context.Context, provider string, msg *delivery.Message, rcpts []string) []delivery.Result {
	n := b.now.Add(1)
	for {
		h := b.highest.Load()
		if n <= h || b.highest.CompareAndSwap(h, n) {
			break
		}
	}
	b.started <- struct{}{}
	<-b.release
	b.now.Add(-1)
	return b.fakeDeliverer.Deliver(ctx, provider, msg, rcpts)
}

// SetLimits on a running queue: a provider's max_connections raised from 1
// to 3 lets 3 attempts run at once; a rate that did not change keeps its
// pacer, a changed one gets a new one.
func TestSetLimits(t *testing.T) {
	o, _ := testOptions(t, t.TempDir())
	o.MaxConnections = map[string]int{"p1": 1}
	o.Rates = map[string]Rate{"p2": {N: 1, Per: time.Second}}
	d := &heldDeliverer{release: make(chan struct{}), started: make(chan struct{}, 10)}
	q := openQueue(t, o, d)
	for range 3 {
		enqueue(t, q, "a@x")
	}
	runQueue(t, q)
	t.Cleanup(func() { close(d.release) })
	waitStarted(t, d.started, 1)
	pace := q.pacers["p2"]
	q.SetLimits(8, map[string]int{"p1": 3}, map[string]Rate{"p2": {N: 1, Per: time.Second}, "p3": {N: 2, Per: time.Minute}})
	waitStarted(t, d.started, 2)
	if h := d.highest.Load(); h != 3 {
		t.Fatalf("%d attempts at once after the limit went to 3", h)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.pacers["p2"] != pace || q.pacers["p3"] == nil || q.opts.Workers != 8 {
		t.Fatalf("pacers %v (p2 kept: %v), workers %d", q.pacers, q.pacers["p2"] == pace, q.opts.Workers)
	}
}

func waitStarted(t *testing.T, started chan struct{}, n int) {
	t.Helper()
	for range n {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatalf("an attempt did not start within 10s")
		}
	}
}
