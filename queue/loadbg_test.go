package queue

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// spoolWith leaves n queued messages and an orphan body in dir.
func spoolWith(t *testing.T, dir string, n int) []string {
	t.Helper()
	o, _ := testOptions(t, dir)
	q, err := Open(o, &fakeDeliverer{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, enqueue(t, q, "a@x"))
	}
	q.Close()
	orphan := filepath.Join(dir, "q", "18ea9b6ff8919954-000000000001.eml")
	if err := os.WriteFile(orphan, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	return ids
}

// With LoadInBackground, Open returns once q/ is listed: new mail is taken
// while the old is still being read; then every old message is listed and
// delivered once, the orphan body is gone, and WaitFor waited for the load.
func TestLoadInBackground(t *testing.T) {
	dir := t.TempDir()
	old := spoolWith(t, dir, 5)
	gate := make(chan struct{})
	loadHook = func() { <-gate }
	t.Cleanup(func() { loadHook = nil })
	o, _ := testOptions(t, dir)
	o.LoadInBackground, o.MaxItems = true, 6
	d := &fakeDeliverer{}
	q := openQueue(t, o, d)
	if s := q.Stats(); s.Items != 0 || s.Loading != 5 {
		t.Fatalf("before the load: %+v, want 0 items and 5 loading", s)
	}
	if err := q.Retry(old[0]); err == nil || !strings.Contains(err.Error(), "still loading") {
		t.Fatalf("Retry during the load = %v, want a still-loading error", err)
	}
	enqueue(t, q, "new@x") // taken while loading
	if _, err := q.Enqueue(context.Background(), "c", "f@x", []string{"a@x"}, strings.NewReader("x\r\n")); err == nil {
		t.Fatal("a 7th message was taken over max_items 6 (5 loading + 1)")
	}
	if _, err := os.Stat(filepath.Join(dir, "q", "18ea9b6ff8919954-000000000001.eml")); !os.IsNotExist(err) {
		t.Fatalf("orphan body still there: %v", err)
	}
	close(gate)
	waitFor(t, q, func(items []Item) bool { return len(items) == 6 })
	if s := q.Stats(); s.Loading != 0 {
		t.Fatalf("after the load: %+v", s)
	}
	runQueue(t, q)
	waitEmpty(t, q)
	if n := len(d.Calls()); n != 6 {
		t.Fatalf("%d deliveries, want 6 (each once)", n)
	}
}

// Close during a background load stops it and returns.
func TestCloseStopsBackgroundLoad(t *testing.T) {
	dir := t.TempDir()
	spoolWith(t, dir, 3)
	gate := make(chan struct{})
	loadHook = func() { <-gate }
	t.Cleanup(func() { loadHook = nil })
	o, _ := testOptions(t, dir)
	o.LoadInBackground = true
	q, err := Open(o, &fakeDeliverer{})
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- q.Close() }()
	close(gate)
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return within 10s")
	}
	o2, _ := testOptions(t, dir)
	q2 := openQueue(t, o2, &fakeDeliverer{})
	if n := len(q2.List()); n != 3 {
		t.Fatalf("%d messages after reopening, want 3 (nothing lost)", n)
	}
}
