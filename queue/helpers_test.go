package queue

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/delivery"
	"github.com/tlsrelay/tlsrelay/internal/smtptest"
)

// call is one Deliver call seen by fakeDeliverer.
type call struct {
	provider string
	rcpts    []string
	body     string
}

// fakeDeliverer records calls and answers with fn (nil = accept everything).
type fakeDeliverer struct {
	mu    sync.Mutex
	fn    func(provider string, rcpts []string) []delivery.Result
	calls []call
}

func (f *fakeDeliverer) Deliver(ctx context.Context, provider string, msg *delivery.Message, rcpts []string) []delivery.Result {
	b, _ := io.ReadAll(msg.Body)
	f.mu.Lock()
	f.calls = append(f.calls, call{provider, append([]string(nil), rcpts...), string(b)})
	fn := f.fn
	f.mu.Unlock()
	if fn != nil {
		return fn(provider, rcpts)
	}
	return make([]delivery.Result, len(rcpts))
}

func (f *fakeDeliverer) setFn(fn func(provider string, rcpts []string) []delivery.Result) {
	f.mu.Lock()
	f.fn = fn
	f.mu.Unlock()
}

func (f *fakeDeliverer) Calls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// testErr is an upstream-like error with an SMTP code and a class.
type testErr struct {
	code int
	perm bool
}

func (e testErr) Error() string   { return fmt.Sprintf("upstream replied %d", e.code) }
func (e testErr) Permanent() bool { return e.perm }
func (e testErr) SMTPCode() int   { return e.code }

var errTemp = testErr{code: 451}
var errPerm = testErr{code: 550, perm: true}

// allResults answers every recipient with err.
func allResults(err error) func(string, []string) []delivery.Result {
	return func(_ string, rcpts []string) []delivery.Result {
		rs := make([]delivery.Result, len(rcpts))
		for i := range rs {
			rs[i].Err = err
		}
		return rs
	}
}

func routeTo(providers ...string) func(string, string) []string {
	return func(string, string) []string { return providers }
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testOptions(t *testing.T, dir string) (Options, *smtptest.LogBuffer) {
	lb := &smtptest.LogBuffer{}
	return Options{
		Dir:   dir,
		Route: routeTo("p1"),
		Retry: Retry{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, Factor: 2},
		Log:   slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, lb
}

// openQueue opens a queue and closes it at the end of the test.
func openQueue(t *testing.T, o Options, d delivery.Deliverer) *Queue {
	t.Helper()
	q, err := Open(o, d)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// runQueue runs q until the test ends, or until the stop it returns is
// called, and then waits (bounded) for Run to return.
func runQueue(t *testing.T, q *Queue) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return within 10s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func enqueue(t *testing.T, q *Queue, to ...string) string {
	t.Helper()
	id, err := q.Enqueue(context.Background(), "127.0.0.1", "app@example.com", to,
		strings.NewReader("Subject: hi\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	return id
}

// waitEmpty waits (bounded) until q/ holds no item.
func waitEmpty(t *testing.T, q *Queue) {
	t.Helper()
	waitFor(t, q, func(items []Item) bool { return len(items) == 0 })
}

func waitFor(t *testing.T, q *Queue, cond func([]Item) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := q.WaitFor(ctx, cond); err != nil {
		t.Fatalf("condition not reached within 10s: %v; items: %+v", err, q.List())
	}
}
