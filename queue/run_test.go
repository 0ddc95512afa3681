package queue

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/delivery"
)

func TestDeliverRemovesItem(t *testing.T) {
	dir := t.TempDir()
	o, logs := testOptions(t, dir)
	d := &fakeDeliverer{}
	q := openQueue(t, o, d)
	runQueue(t, q)
	id := enqueue(t, q, "a@x", "b@x")
	waitEmpty(t, q)
	calls := d.Calls()
	if len(calls) != 1 || calls[0].provider != "p1" || strings.Join(calls[0].rcpts, ",") != "a@x,b@x" ||
		calls[0].body != "Subject: hi\r\n\r\nbody\r\n" {
		t.Fatalf("calls = %+v, want one call to p1 with both recipients and the body", calls)
	}
	assertEmptyDir(t, filepath.Join(dir, "q"))
	if !strings.Contains(logs.String(), "msg=queued id="+id+" size=21 rcpts=2 route=[p1]") {
		t.Errorf("no queued event:\n%s", logs)
	}
	if n := strings.Count(logs.String(), "msg=delivered id="+id); n != 2 {
		t.Fatalf("%d delivered log lines, want 2:\n%s", n, logs)
	}
}

// readDead reads a dead-lettered envelope.
func readDead(t *testing.T, dir, id string) Item {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "dead", id+".json"))
	if err != nil {
		t.Fatalf("dead letter: %v", err)
	}
	var it Item
	if err := json.Unmarshal(b, &it); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "dead", id+".eml")); err != nil {
		t.Fatalf("dead letter body: %v", err)
	}
	return it
}

// TestPermanentFailureIsPerRecipient: a 5xx for one recipient fails that
// one; the other is delivered; the item goes to dead/ with both recorded.
func TestPermanentFailureIsPerRecipient(t *testing.T) {
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	d := &fakeDeliverer{fn: func(_ string, rcpts []string) []delivery.Result {
		rs := make([]delivery.Result, len(rcpts))
		for i, r := range rcpts {
			if r == "bad@x" {
				rs[i].Err = errPerm
			} else {
				rs[i].Reply = "250 2.0.0 ok"
			}
		}
		return rs
	}}
	q := openQueue(t, o, d)
	runQueue(t, q)
	id := enqueue(t, q, "good@x", "bad@x")
	waitEmpty(t, q)
	it := readDead(t, dir, id)
	if it.Rcpts[0].Status != Delivered || it.Rcpts[0].Reply != "250 2.0.0 ok" || it.Rcpts[0].Provider != "p1" {
		t.Errorf("good recipient: %+v", it.Rcpts[0])
	}
	if r := it.Rcpts[1]; r.Status != Failed || r.LastCode != 550 || r.Attempts != 1 {
		t.Errorf("bad recipient: %+v", r)
	}
	if n := len(d.Calls()); n != 1 {
		t.Errorf("%d attempts, want 1 (a permanent failure is not retried)", n)
	}
}

// TestFailoverToNextProvider: a temporary failure on the first provider
// moves the recipient to the second at once.
func TestFailoverToNextProvider(t *testing.T) {
	o, logs := testOptions(t, t.TempDir())
	o.Route = routeTo("down", "up")
	d := &fakeDeliverer{fn: func(p string, rcpts []string) []delivery.Result {
		if p == "down" {
			return allResults(errTemp)(p, rcpts)
		}
		return make([]delivery.Result, len(rcpts))
	}}
	q := openQueue(t, o, d)
	runQueue(t, q)
	enqueue(t, q, "a@x")
	waitEmpty(t, q)
	calls := d.Calls()
	if len(calls) != 2 || calls[0].provider != "down" || calls[1].provider != "up" {
		t.Fatalf("calls = %+v, want down then up", calls)
	}
	if !strings.Contains(logs.String(), "next_provider=up") {
		t.Errorf("log does not say the recipient moved to the next provider:\n%s", logs)
	}
}

// TestRetryAfterTemporaryFailure: the provider is down, then up; the
// message is deferred with a next attempt and delivered after the retry.
func TestRetryAfterTemporaryFailure(t *testing.T) {
	o, _ := testOptions(t, t.TempDir())
	d := &fakeDeliverer{fn: allResults(errTemp)}
	q := openQueue(t, o, d)
	runQueue(t, q)
	enqueue(t, q, "a@x")
	waitFor(t, q, func(items []Item) bool {
		return len(items) == 1 && items[0].Rcpts[0].Status == Deferred && items[0].Rcpts[0].Attempts >= 2
	})
	it := q.List()[0]
	if r := it.Rcpts[0]; r.LastCode != 451 || r.NextAttempt.IsZero() || r.Index != 0 {
		t.Fatalf("deferred recipient: %+v", r)
	}
	d.setFn(nil) // the provider comes back
	waitEmpty(t, q)
}

// TestExpiryMovesToDead uses a fake clock: past max_age the deferred
// recipient fails with "expired" and the item goes to dead/.
func TestExpiryMovesToDead(t *testing.T) {
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	o.Now = clock.Now
	o.MaxAge = time.Hour
	o.Retry = Retry{Initial: time.Minute, Max: time.Minute, Factor: 1}
	d := &fakeDeliverer{fn: allResults(errTemp)}
	q := openQueue(t, o, d)
	runQueue(t, q)
	id := enqueue(t, q, "a@x")
	waitFor(t, q, func(items []Item) bool { return len(items) == 1 && items[0].Rcpts[0].Status == Deferred })
	if next := q.List()[0].Rcpts[0].NextAttempt; !next.Equal(clock.Now().Add(time.Minute)) {
		t.Fatalf("next attempt %v, want now+1m (the pure schedule with the fake clock)", next)
	}
	clock.Add(2 * time.Hour)
	q.mu.Lock()
	q.notifyLocked() // the scheduler sleeps on a real timer; tell it the clock moved
	q.mu.Unlock()
	waitEmpty(t, q)
	r := readDead(t, dir, id).Rcpts[0]
	if r.Status != Failed || !strings.Contains(r.LastError, "expired") || !strings.Contains(r.LastError, "upstream replied 451") {
		t.Fatalf("expired recipient: %+v", r)
	}
}

// TestRestartDeliversExactlyOnce: mail queued while no worker runs is
// delivered once after a reopen.
func TestRestartDeliversExactlyOnce(t *testing.T) {
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	q, err := Open(o, &fakeDeliverer{})
	if err != nil {
		t.Fatal(err)
	}
	enqueue(t, q, "a@x")
	q.Close()

	d := &fakeDeliverer{}
	q2 := openQueue(t, o, d)
	runQueue(t, q2)
	waitEmpty(t, q2)
	if n := len(d.Calls()); n != 1 {
		t.Fatalf("%d deliveries after restart, want 1", n)
	}
}

func TestWrongResultCountIsTemporary(t *testing.T) {
	o, _ := testOptions(t, t.TempDir())
	d := &fakeDeliverer{fn: func(string, []string) []delivery.Result { return nil }}
	q := openQueue(t, o, d)
	runQueue(t, q)
	enqueue(t, q, "a@x")
	waitFor(t, q, func(items []Item) bool { return len(items) == 1 && items[0].Rcpts[0].Status == Deferred })
	if e := q.List()[0].Rcpts[0].LastError; !strings.Contains(e, "0 results for 1 recipients") {
		t.Fatalf("last error %q", e)
	}
}

type panicDeliverer struct{}

func (panicDeliverer) Deliver(_ context.Context, p string, m *delivery.Message, r []string) []delivery.Result {
	panic("bug")
}

func TestDelivererPanicKeepsMessage(t *testing.T) {
	dir := t.TempDir()
	o, logs := testOptions(t, dir)
	q := openQueue(t, o, panicDeliverer{})
	runQueue(t, q)
	id := enqueue(t, q, "a@x")
	waitFor(t, q, func([]Item) bool { return strings.Contains(logs.String(), "delivery panicked") })
	if _, err := os.Stat(filepath.Join(dir, "q", id+".eml")); err != nil {
		t.Fatalf("message lost after a panic: %v", err)
	}
}

// TestLoweredMaxAgeExpiresOnTime: an item saved with a far next attempt
// expires at its (new, shorter) max_age, not at that attempt.
func TestLoweredMaxAgeExpiresOnTime(t *testing.T) {
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	o.Now = clock.Now
	o.Retry = Retry{Initial: 24 * time.Hour, Max: 24 * time.Hour, Factor: 1}
	q1, err := Open(o, &fakeDeliverer{fn: allResults(errTemp)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- q1.Run(ctx) }()
	id := enqueue(t, q1, "a@x")
	waitFor(t, q1, func(items []Item) bool { return len(items) == 1 && items[0].Rcpts[0].Status == Deferred })
	stop()
	<-ran
	q1.Close()

	o.MaxAge = time.Hour // lowered in the config; the saved next attempt is a day away
	clock.Add(2 * time.Hour)
	q2 := openQueue(t, o, &fakeDeliverer{fn: allResults(errTemp)})
	runQueue(t, q2)
	waitEmpty(t, q2)
	if r := readDead(t, dir, id).Rcpts[0]; !strings.Contains(r.LastError, "expired") {
		t.Fatalf("recipient %+v, want expired", r)
	}
}

// hangingDeliverer never answers until its context ends.
type hangingDeliverer struct{ started chan struct{} }

func (h hangingDeliverer) Deliver(ctx context.Context, _ string, _ *delivery.Message, rcpts []string) []delivery.Result {
	h.started <- struct{}{}
	<-ctx.Done()
	return allResults(ctx.Err())("", rcpts)
}

// TestStopCancelsHangingDelivery: after Run's context ends, a delivery that
// hangs is cancelled after StopTimeout, Run returns, and the message stays
// queued for the next start.
func TestStopCancelsHangingDelivery(t *testing.T) {
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.StopTimeout = 50 * time.Millisecond
	h := hangingDeliverer{started: make(chan struct{}, 1)}
	q := openQueue(t, o, h)
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- q.Run(ctx) }()
	id := enqueue(t, q, "a@x")
	select {
	case <-h.started:
	case <-time.After(10 * time.Second):
		t.Fatal("delivery did not start")
	}
	stop()
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after StopTimeout")
	}
	q.Close()
	q2 := openQueue(t, o, &fakeDeliverer{})
	if items := q2.List(); len(items) != 1 || items[0].ID != id {
		t.Fatalf("after stop: %+v, want the message still queued", items)
	}
}
