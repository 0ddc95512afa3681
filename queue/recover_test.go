package queue

import (
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/delivery"
)

// After an outage, the first delivery that succeeds makes every message
// waiting for that provider due now: they do not wait out their backoff
// (an hour here, so the test would time out without it).
func TestProviderRecovery(t *testing.T) {
	o, logs := testOptions(t, t.TempDir())
	o.Retry = Retry{Initial: time.Hour, Max: time.Hour, Factor: 2}
	d := &fakeDeliverer{fn: allResults(errTemp)}
	q := openQueue(t, o, d)
	runQueue(t, q)
	for i := 0; i < 3; i++ {
		enqueue(t, q, "a@x")
	}
	waitFor(t, q, func(items []Item) bool {
		for _, it := range items {
			if it.Rcpts[0].Status != Deferred {
				return false
			}
		}
		return len(items) == 3
	})
	d.setFn(nil) // the provider is back
	enqueue(t, q, "b@x")
	waitEmpty(t, q)
	if n := len(d.Calls()); n != 7 {
		t.Errorf("%d attempts, want 3 deferred + 4 delivered", n)
	}
	if !strings.Contains(logs.String(), "provider is back") || !strings.Contains(logs.String(), "messages=3") {
		t.Errorf("no recovery line for the 3 waiting messages in:\n%s", logs)
	}
}

// A permanent refusal says nothing about the provider being down, and a
// delivery after it recovers nothing; a provider that flaps is recovered at
// most once per retry.initial.
func TestRecoveryRules(t *testing.T) {
	q := &Queue{opts: Options{Retry: Retry{Initial: time.Minute}}}
	t0 := time.Now()
	note := func(at time.Duration, rs ...delivery.Result) bool { return q.noteOutcome("p", rs, t0.Add(at)) }
	if note(0, delivery.Result{Err: errPerm}) || note(0, delivery.Result{}) {
		t.Fatal("recovery after a permanent failure")
	}
	if note(0, delivery.Result{Err: errTemp}) || !note(0, delivery.Result{}, delivery.Result{Err: errTemp}) {
		t.Fatal("no recovery after a temporary failure")
	}
	if note(time.Second, delivery.Result{}) {
		t.Fatal("recovery twice")
	}
	if note(time.Second, delivery.Result{Err: errTemp}) || note(2*time.Second, delivery.Result{}) {
		t.Fatal("recovered again within retry.initial of the last recovery")
	}
	if note(time.Minute, delivery.Result{Err: errTemp}) || !note(time.Minute, delivery.Result{}) {
		t.Fatal("not recovered once retry.initial has passed")
	}
}
