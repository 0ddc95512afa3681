package queue

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestOldestEntries(t *testing.T) {
	byID := func(a, b *entry) int { return strings.Compare(a.item.ID, b.item.ID) }
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 40 {
		es := make([]*entry, n)
		for i := range es {
			es[i] = &entry{item: &Item{ID: fmt.Sprintf("%04d", r.IntN(50))}}
		}
		orig := slices.Clone(es)
		sorted := slices.Clone(es)
		slices.SortStableFunc(sorted, byID)
		for _, m := range []int{1, 3, 8, 50} {
			got := oldestEntries(es, m, byID)
			want := sorted[:min(m, n)]
			if !slices.EqualFunc(got, want, func(a, b *entry) bool { return a.item.ID == b.item.ID }) {
				t.Fatalf("n=%d m=%d: got %d entries, not the %d smallest in order", n, m, len(got), len(want))
			}
			if !slices.Equal(es, orig) {
				t.Fatalf("n=%d m=%d: input changed", n, m)
			}
		}
	}
}

// BenchmarkDispatch measures one scheduler pass over a backlog of 2,000 due
// messages with every worker free (4): it picks the 4 oldest.
func BenchmarkDispatch(b *testing.B) {
	q := openBenchQueue(b)
	now := time.Now()
	for i := range 2000 {
		it := &Item{V: envelopeVersion, ID: fmt.Sprintf("%016x-000000000000", now.UnixNano()+int64(i*7919%2000)),
			Arrived: now, Rcpts: []Rcpt{{Addr: "b@example.net", Route: []string{"p"}, Status: Pending, NextAttempt: now}}}
		q.items[it.ID] = &entry{item: it}
	}
	done := make(chan struct{}, 4)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // workers started by dispatch return at once, without delivering
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for _, e := range q.items {
			e.busy = false
		}
		b.StartTimer()
		if n, _ := q.dispatch(ctx, 4, done); n != 4 {
			b.Fatalf("dispatched %d", n)
		}
		b.StopTimer()
		for range 4 {
			<-done
		}
		b.StartTimer()
	}
}
