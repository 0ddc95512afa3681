package queue

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// deliverOne enqueues body for a@x, runs the queue until it is delivered
// and stops it again.
func deliverOne(t *testing.T, q *Queue, body string) {
	t.Helper()
	stop := runQueue(t, q)
	if _, err := q.Enqueue(context.Background(), "127.0.0.1", "f@x", []string{"a@x"}, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	waitEmpty(t, q)
	stop()
}

func tmpNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// A delivered message's files are reused by the next enqueue: overwritten
// from the start, truncated to the new length and fsynced before they are
// renamed into q/. A longer old message must leave nothing behind in the
// new one, on disk and as delivered.
func TestRecycledFilesHoldOnlyTheNewMessage(t *testing.T) {
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	fs := &recFS{}
	o.FS = fs
	d := &fakeDeliverer{}
	q := openQueue(t, o, d)
	long := "Subject: old\r\n\r\n" + strings.Repeat("old old old\r\n", 500)
	deliverOne(t, q, long)
	if n := len(tmpNames(t, dir)); n != 2 {
		t.Fatalf("%d files in tmp/ after a delivery, want its 2, kept for reuse", n)
	}
	fs.mu.Lock()
	fs.ops = nil
	fs.mu.Unlock()
	id := enqueue(t, q, "a@x")
	fs.mu.Lock()
	got := strings.Join(fs.ops, "\n")
	fs.mu.Unlock()
	for _, op := range []string{"reuse tmp/", "truncate tmp/", "sync tmp/", "rename tmp/ q/.eml", "rename tmp/ q/.json"} {
		if !strings.Contains(got, op) {
			t.Fatalf("no %q in:\n%s", op, got)
		}
	}
	if strings.Contains(got, "create") {
		t.Errorf("a file was created although two were free:\n%s", got)
	}
	if i, j := strings.Index(got, "truncate tmp/"), strings.Index(got, "sync tmp/"); i > j {
		t.Errorf("truncate after sync:\n%s", got)
	}
	body, err := os.ReadFile(filepath.Join(dir, "q", id+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "Subject: hi\r\n\r\nbody\r\n"; string(body) != want {
		t.Fatalf("recycled body on disk = %q..., want %q", body[:min(len(body), 40)], want)
	}
	q.Close()
	q2 := openQueue(t, o, d)
	if len(q2.List()) != 1 || len(tmpNames(t, dir)) != 0 {
		t.Fatalf("after restart: %d queued (want 1), tmp/ holds %v (want nothing)", len(q2.List()), tmpNames(t, dir))
	}
	short := "Subject: new\r\n\r\nnew\r\n"
	deliverOne(t, q2, short)
	calls := d.Calls()
	if len(calls) != 3 || calls[1].body != "Subject: hi\r\n\r\nbody\r\n" || calls[2].body != short {
		t.Fatalf("delivered bodies: %d calls, %q", len(calls), calls)
	}
}

// Big files are removed, not kept; and no more than maxFree wait in tmp/.
func TestRecycleBounds(t *testing.T) {
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	q := openQueue(t, o, &fakeDeliverer{})
	deliverOne(t, q, strings.Repeat("x", maxRecycleBytes+1))
	if names := tmpNames(t, dir); len(names) != 1 {
		t.Fatalf("tmp/ after a big message: %v, want only its envelope", names)
	}
	r := &recycler{dir: filepath.Join(dir, "tmp")}
	for i := 0; i < maxFree+5; i++ {
		if p := r.slot(100); p != "" {
			r.done(p, true)
		}
	}
	if len(r.free) != maxFree || r.slot(100) != "" {
		t.Fatalf("%d free, want at most %d", len(r.free), maxFree)
	}
	if p := r.take(); p == "" || len(r.free) != maxFree-1 {
		t.Fatal("take did not hand out a free file")
	}
}

// A failure while writing into a recycled file leaves nothing in q/, and
// the queue goes on.
func TestRecycledWriteFailure(t *testing.T) {
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	fs := &recFS{}
	o.FS = fs
	q := openQueue(t, o, &fakeDeliverer{})
	deliverOne(t, q, "Subject: a\r\n\r\na\r\n")
	fs.mu.Lock()
	fs.failOn = "truncate tmp/"
	fs.mu.Unlock()
	_, err := q.Enqueue(context.Background(), "c", "f@x", []string{"a@x"}, strings.NewReader("x\r\n"))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Enqueue error = %v, want ENOSPC", err)
	}
	assertEmptyDir(t, filepath.Join(dir, "q"))
	if names := tmpNames(t, dir); len(names) != 1 {
		t.Fatalf("tmp/ holds %v, want only the recycled file not yet used", names)
	}
	fs.mu.Lock()
	fs.failOn = ""
	fs.mu.Unlock()
	enqueue(t, q, "a@x")
}

// When a delivered message's file cannot be renamed into tmp/ for reuse, it
// is removed as before: the delivery still ends with the message out of q/.
func TestDisposeFallsBackToRemove(t *testing.T) {
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	fs := &recFS{failOn: "rename q/.json tmp/"}
	o.FS = fs
	q := openQueue(t, o, &fakeDeliverer{})
	deliverOne(t, q, "Subject: a\r\n\r\na\r\n")
	assertEmptyDir(t, filepath.Join(dir, "q"))
	fs.mu.Lock()
	got := strings.Join(fs.ops, "\n")
	fs.mu.Unlock()
	if !strings.Contains(got, "rename q/.json tmp/\nremove q/.json") {
		t.Fatalf("no removal after the failed rename:\n%s", got)
	}
	if names := tmpNames(t, dir); len(names) != 1 {
		t.Fatalf("tmp/ holds %v, want only the body kept for reuse", names)
	}
}
