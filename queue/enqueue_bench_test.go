package queue

import (
	"bytes"
	"context"
	"testing"

	"github.com/tlsrelay/tlsrelay/delivery"
	"github.com/tlsrelay/tlsrelay/internal/smtptest"
)

// nopDeliverer accepts nothing; the benchmarks never run the workers.
type nopDeliverer struct{}

func (nopDeliverer) Deliver(context.Context, string, *delivery.Message, []string) []delivery.Result {
	return nil
}

// openBenchQueue opens a queue in a temporary directory on the disk the
// tests run on (not tmpfs, if TMPDIR is not): Enqueue really fsyncs.
func openBenchQueue(b *testing.B) *Queue {
	b.Helper()
	q, err := Open(Options{
		Dir:   b.TempDir(),
		Route: func(string, string) []string { return []string{"p"} },
	}, nopDeliverer{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { q.Close() })
	return q
}

// BenchmarkEnqueue measures one durable enqueue of a 4 KiB message: body
// and envelope written and fsynced, renamed, the directory fsynced. In
// parallel, concurrent enqueues share directory fsyncs (group commit).
func BenchmarkEnqueue(b *testing.B) {
	body := []byte(smtptest.Body(4 << 10))
	to := []string{"b@example.net"}
	ctx := context.Background()
	b.Run("4KiB/sequential", func(b *testing.B) {
		q := openBenchQueue(b)
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := q.Enqueue(ctx, "127.0.0.1:1", "a@example.com", to, bytes.NewReader(body)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("4KiB/parallel", func(b *testing.B) {
		q := openBenchQueue(b)
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		b.SetParallelism(8) // 8 x GOMAXPROCS writers: sessions block on fsync, not CPU
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := q.Enqueue(ctx, "127.0.0.1:1", "a@example.com", to, bytes.NewReader(body)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
