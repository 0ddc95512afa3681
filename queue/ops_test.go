package queue

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/delivery"
)

func TestGetRetryDelete(t *testing.T) {
	dir := t.TempDir()
	o, logs := testOptions(t, dir)
	o.Retry = Retry{Initial: time.Hour, Max: time.Hour, Factor: 1} // no retry on its own within the test
	d := &fakeDeliverer{fn: allResults(errTemp)}
	q := openQueue(t, o, d)
	runQueue(t, q)
	id := enqueue(t, q, "a@x")
	waitFor(t, q, func(items []Item) bool { return len(items) == 1 && items[0].Rcpts[0].Status == Deferred })

	it, err := q.Get(id)
	if err != nil || it.ID != id || len(it.History) != 1 || it.History[0].Code != 451 || it.History[0].Status != Deferred {
		t.Fatalf("Get = %+v, %v; want one deferred event with code 451", it, err)
	}
	if _, err := q.Get("0000000000000000-000000000000"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get unknown = %v, want ErrNotFound", err)
	}

	d.setFn(nil) // the provider is back; only an operator retry can tell the queue before the hour is up
	if err := q.Retry(id); err != nil {
		t.Fatalf("Retry: %v", err)
	}
	waitEmpty(t, q)
	if n := len(d.Calls()); n != 2 {
		t.Fatalf("%d attempts, want 2 (the first, then the operator's retry)", n)
	}

	d.setFn(allResults(errTemp))
	id2 := enqueue(t, q, "b@x")
	waitFor(t, q, func(items []Item) bool { return len(items) == 1 && items[0].Rcpts[0].Status == Deferred })
	if err := q.Delete(id2); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if len(q.List()) != 0 {
		t.Fatal("deleted message still listed")
	}
	for _, ext := range []string{".eml", ".json"} {
		if _, err := os.Stat(filepath.Join(dir, "q", id2+ext)); !os.IsNotExist(err) {
			t.Errorf("%s%s still on disk", id2, ext)
		}
	}
	if err := q.Delete(id2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete = %v, want ErrNotFound", err)
	}
	if !strings.Contains(logs.String(), "msg=deleted id="+id2) {
		t.Errorf("deletion not logged")
	}
}

// blockingDeliverer holds every delivery until release is closed.
type blockingDeliverer struct {
	fakeDeliverer
	started chan struct{}
	release chan struct{}
}

func (b *blockingDeliverer) Deliver(ctx context.Context, p string, m *delivery.Message, r []string) []delivery.Result {
	b.started <- struct{}{}
	<-b.release
	return b.fakeDeliverer.Deliver(ctx, p, m, r)
}

func TestOpsOnBusyMessage(t *testing.T) {
	o, _ := testOptions(t, t.TempDir())
	d := &blockingDeliverer{started: make(chan struct{}, 1), release: make(chan struct{})}
	q := openQueue(t, o, d)
	runQueue(t, q)
	id := enqueue(t, q, "a@x")
	select {
	case <-d.started:
	case <-time.After(10 * time.Second):
		t.Fatal("delivery did not start")
	}
	// Delete waits for the delivery in progress to end; then the message
	// is gone (delivered), which it reports as not found.
	deleted := make(chan error, 1)
	go func() { deleted <- q.Delete(id) }()
	close(d.release)
	select {
	case err := <-deleted:
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("Delete during delivery = %v, want it to wait, then ErrNotFound", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Delete did not return")
	}
	waitEmpty(t, q)
}

func TestDeadAndRequeue(t *testing.T) {
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	d := &fakeDeliverer{fn: func(_ string, rcpts []string) []delivery.Result {
		rs := make([]delivery.Result, len(rcpts))
		for i, r := range rcpts {
			if r == "bad@x" {
				rs[i].Err = errPerm
			}
		}
		return rs
	}}
	q := openQueue(t, o, d)
	runQueue(t, q)
	id := enqueue(t, q, "good@x", "bad@x")
	waitEmpty(t, q)
	dead, err := q.Dead()
	if err != nil || len(dead) != 1 || dead[0].ID != id || len(dead[0].History) != 2 {
		t.Fatalf("Dead = %+v, %v; want the message with 2 history events", dead, err)
	}

	d.setFn(nil) // the recipient now exists
	if err := q.Requeue(id); err != nil {
		t.Fatalf("Requeue: %v", err)
	}
	waitEmpty(t, q)
	calls := d.Calls()
	if len(calls) != 2 || len(calls[1].rcpts) != 1 || calls[1].rcpts[0] != "bad@x" {
		t.Fatalf("calls = %+v; want the requeue to retry only the failed recipient", calls)
	}
	if dead, _ := q.Dead(); len(dead) != 0 {
		t.Fatalf("dead letters after a successful requeue: %+v", dead)
	}
	assertEmptyDir(t, filepath.Join(dir, "q"))
	if err := q.Requeue(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Requeue of a gone letter = %v, want ErrNotFound", err)
	}
}

func TestStatsAndCheckWritable(t *testing.T) {
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	o.Now = clock.Now
	q := openQueue(t, o, &fakeDeliverer{})
	if s := q.Stats(); s.Items != 0 || !s.Oldest.IsZero() {
		t.Fatalf("empty Stats = %+v", s)
	}
	enqueue(t, q, "a@x")
	first := clock.Now()
	clock.Add(time.Minute)
	enqueue(t, q, "b@x")
	if s := q.Stats(); s.Items != 2 || s.Bytes != 42 || !s.Oldest.Equal(first) {
		t.Fatalf("Stats = %+v, want 2 items, 42 bytes, oldest %v", s, first)
	}
	if err := q.CheckWritable(); err != nil {
		t.Fatalf("CheckWritable: %v", err)
	}
	assertEmptyDir(t, filepath.Join(dir, "tmp"))

	o2, _ := testOptions(t, t.TempDir())
	o2.FS = &recFS{failOn: "sync tmp/"}
	q2 := openQueue(t, o2, &fakeDeliverer{})
	if err := q2.CheckWritable(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("CheckWritable on a full disk = %v, want ENOSPC", err)
	}
	assertEmptyDir(t, filepath.Join(o2.Dir, "tmp"))
}
