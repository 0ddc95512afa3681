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

// Big files are removed, not kept; and no more than maxFree files, of no
// more than maxFreeBytes in all, wait in tmp/.
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
			r.done(p, i%2, 100, 100, true)
		}
	}
	if n := len(r.free[kindBody]) + len(r.free[kindEnvelope]); n != maxFree || r.slot(100) != "" {
		t.Fatalf("%d free, want at most %d", n, maxFree)
	}
	if f := r.take(kindEnvelope); f.path == "" || f.size != 100 || len(r.free[kindEnvelope]) != maxFree/2-1 {
		t.Fatal("take did not hand out a free file of its kind")
	}
	r = &recycler{dir: filepath.Join(dir, "tmp")}
	kept := 0
	for i := 0; i < 2*maxFreeBytes/maxRecycleBytes; i++ {
		p := r.slot(maxRecycleBytes)
		if p == "" {
			continue
		}
		ok := i%3 != 0 // a third of the renames fail and give their room back
		r.done(p, kindBody, maxRecycleBytes, 0, ok)
		if ok {
			kept++
		}
	}
	if r.bytes > maxFreeBytes || r.bytes != int64(kept)*maxRecycleBytes || kept < maxFreeBytes/maxRecycleBytes {
		t.Fatalf("%d bytes in %d kept files (%d in the list), want %d files of %d bytes",
			r.bytes, kept, len(r.free[kindBody]), maxFreeBytes/maxRecycleBytes, maxRecycleBytes)
	}
	if r.take(kindBody); r.bytes != int64(kept-1)*maxRecycleBytes || r.slot(maxRecycleBytes) == "" {
		t.Fatal("take did not give back the room of the file it handed out")
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

// A recycled file overwritten with no fewer bytes than it held is not
// truncated (a truncate cost more than the write in a profile); a shorter
// envelope is padded with spaces instead, which JSON ignores: after a
// restart the message is read back whole.
func TestRecycledFilesWithoutTruncate(t *testing.T) {
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	fs := &recFS{}
	o.FS = fs
	d := &fakeDeliverer{}
	q := openQueue(t, o, d)
	body := "Subject: same\r\n\r\n" + strings.Repeat("line\r\n", 100)
	stop := runQueue(t, q)
	if _, err := q.Enqueue(context.Background(), "127.0.0.1", "a-long-sender-name@example.org", []string{"a@x"}, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	waitEmpty(t, q)
	stop()
	fs.mu.Lock()
	fs.ops = nil
	fs.mu.Unlock()
	id, err := q.Enqueue(context.Background(), "127.0.0.1", "s@x", []string{"a@x"}, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	fs.mu.Lock()
	got := strings.Join(fs.ops, "\n")
	fs.mu.Unlock()
	if strings.Contains(got, "truncate") || strings.Contains(got, "create") || strings.Count(got, "reuse tmp/") != 2 {
		t.Fatalf("want both files reused and neither truncated:\n%s", got)
	}
	env, err := os.ReadFile(filepath.Join(dir, "q", id+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if trimmed := strings.TrimRight(string(env), " "); len(trimmed) == len(env) || !strings.HasSuffix(trimmed, "}\n") {
		t.Fatalf("shorter envelope not padded with spaces: ...%q", env[max(0, len(env)-20):])
	}
	q.Close()
	q2 := openQueue(t, o, d)
	items := q2.List()
	if len(items) != 1 || items[0].From != "s@x" || items[0].Size != int64(len(body)) {
		t.Fatalf("after restart: %+v", items)
	}
	deliverOne(t, q2, "Subject: x\r\n\r\nx\r\n")
	calls := d.Calls()
	if len(calls) != 3 || calls[1].body != body {
		t.Fatalf("delivered: %d calls; the recycled body was not delivered whole", len(calls))
	}
}
