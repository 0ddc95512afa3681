package queue

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/delivery"
)

// timedDeliverer records when each attempt started.
type timedDeliverer struct {
	mu    sync.Mutex
	times []time.Time
}

func (d *timedDeliverer) Deliver(_ context.Context, _ string, _ *delivery.Message, rcpts []string) []delivery.Result {
	d.mu.Lock()
	d.times = append(d.times, time.Now())
	d.mu.Unlock()
	return make([]delivery.Result, len(rcpts))
}

// TestRatePacesAttempts: with rate 20/s, attempts start at least 50ms
// apart. Only a lower bound is asserted: a slow machine makes gaps longer,
// never shorter.
func TestRatePacesAttempts(t *testing.T) {
	o, _ := testOptions(t, t.TempDir())
	o.Workers = 4
	o.Rates = map[string]Rate{"p1": {N: 20, Per: time.Second}}
	d := &timedDeliverer{}
	q := openQueue(t, o, d)
	for i := 0; i < 4; i++ {
		enqueue(t, q, "a@x")
	}
	runQueue(t, q)
	waitEmpty(t, q)
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.times) != 4 {
		t.Fatalf("%d attempts, want 4", len(d.times))
	}
	for i := 1; i < len(d.times); i++ {
		if gap := d.times[i].Sub(d.times[i-1]); gap < 45*time.Millisecond {
			t.Errorf("attempt %d started %v after the previous one, want >= 50ms (rate 20/s)", i, gap)
		}
	}
}

// gateDeliverer blocks deliveries to provider "slow" until released.
type gateDeliverer struct {
	fakeDeliverer
	release chan struct{}
}

func (g *gateDeliverer) Deliver(ctx context.Context, p string, m *delivery.Message, r []string) []delivery.Result {
	if p == "slow" {
		<-g.release
	}
	return g.fakeDeliverer.Deliver(ctx, p, m, r)
}

// TestSlowProviderDoesNotStarveOthers: a provider at its connection limit
// must not hold every worker while another provider's mail waits.
func TestSlowProviderDoesNotStarveOthers(t *testing.T) {
	o, _ := testOptions(t, t.TempDir())
	o.Workers = 2
	o.MaxConnections = map[string]int{"slow": 1}
	o.Route = func(_, rcpt string) []string {
		if strings.HasPrefix(rcpt, "fast") {
			return []string{"fast"}
		}
		return []string{"slow"}
	}
	g := &gateDeliverer{release: make(chan struct{})}
	q := openQueue(t, o, g)
	for i := 0; i < 3; i++ {
		enqueue(t, q, "slow@x")
	}
	fast := enqueue(t, q, "fast@x")
	runQueue(t, q)
	waitFor(t, q, func(items []Item) bool {
		for _, it := range items {
			if it.ID == fast {
				return false
			}
		}
		return true
	})
	close(g.release)
	waitEmpty(t, q)
}
