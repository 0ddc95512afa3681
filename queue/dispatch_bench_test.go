package queue

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkDispatch measures one scheduler pass over a backlog of 2,000 due
// messages with every worker free (4): it picks the 4 oldest. The workers
// it starts return at once and put their items back into the index.
func BenchmarkDispatch(b *testing.B) {
	q := openBenchQueue(b)
	now := time.Now()
	for i := range 2000 {
		it := &Item{V: envelopeVersion, ID: fmt.Sprintf("%016x-000000000000", now.UnixNano()+int64(i*7919%2000)),
			Arrived: now, Rcpts: []Rcpt{{Addr: "b@example.net", Route: []string{"p"}, Status: Pending, NextAttempt: now}}}
		e := &entry{item: it}
		q.items[it.ID] = e
		q.indexLocked(e)
	}
	done := make(chan struct{}, 4)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // workers started by dispatch return at once, without delivering
	b.ReportAllocs()
	for b.Loop() {
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
