package queue

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"
)

// recFS records the spool's write operations in order and can fail one.
type recFS struct {
	OSFS
	mu     sync.Mutex
	ops    []string
	failOn string // an op prefix that fails with ENOSPC, e.g. "sync tmp/"
}

func (f *recFS) rec(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, op)
	if f.failOn != "" && strings.HasPrefix(op, f.failOn) {
		return syscall.ENOSPC
	}
	return nil
}

func rel(p string) string { return filepath.Base(filepath.Dir(p)) + "/" + filepath.Ext(p) }

func (f *recFS) Create(name string) (File, error) {
	if err := f.rec("create " + rel(name)); err != nil {
		return nil, err
	}
	file, err := f.OSFS.Create(name)
	if err != nil {
		return nil, err
	}
	return &recFile{File: file, fs: f, name: rel(name)}, nil
}

func (f *recFS) Reuse(name string) (File, error) {
	if err := f.rec("reuse " + rel(name)); err != nil {
		return nil, err
	}
	file, err := f.OSFS.Reuse(name)
	if err != nil {
		return nil, err
	}
	return &recFile{File: file, fs: f, name: rel(name)}, nil
}

func (f *recFS) Rename(o, n string) error {
	if err := f.rec("rename " + rel(o) + " " + rel(n)); err != nil {
		return err
	}
	return f.OSFS.Rename(o, n)
}

func (f *recFS) Remove(name string) error {
	if err := f.rec("remove " + rel(name)); err != nil {
		return err
	}
	return f.OSFS.Remove(name)
}

func (f *recFS) SyncDir(dir string) error {
	if err := f.rec("syncdir " + filepath.Base(dir)); err != nil {
		return err
	}
	return f.OSFS.SyncDir(dir)
}

type recFile struct {
	File
	fs   *recFS
	name string
}

func (r *recFile) Sync() error {
	if err := r.fs.rec("sync " + r.name); err != nil {
		return err
	}
	return r.File.Sync()
}

func (r *recFile) Truncate(size int64) error {
	if err := r.fs.rec("truncate " + r.name); err != nil {
		return err
	}
	return r.File.Truncate(size)
}

func (r *recFile) Close() error {
	r.fs.rec("close " + r.name)
	return r.File.Close()
}

// TestEnqueueSyncOrder proves that Enqueue returns only after the body and
// the envelope are fsynced and renamed into q/ and q/ is fsynced: a kill -9
// test cannot tell this apart from a relay that never fsyncs. The two file
// fsyncs may run in either order (they run at the same time), but each
// comes before its rename, the body's rename before the envelope's (the
// commit marker), and the directory fsync last.
func TestEnqueueSyncOrder(t *testing.T) {
	o, _ := testOptions(t, t.TempDir())
	fs := &recFS{}
	o.FS = fs
	q := openQueue(t, o, &fakeDeliverer{})
	enqueue(t, q, "a@x")
	fs.mu.Lock()
	got := append([]string(nil), fs.ops...)
	fs.mu.Unlock()
	at := map[string]int{}
	for i, op := range got {
		at[op] = i + 1
	}
	all := []string{"create tmp/.eml", "sync tmp/.eml", "close tmp/.eml", "rename tmp/.eml q/.eml",
		"create tmp/.json", "sync tmp/.json", "close tmp/.json", "rename tmp/.json q/.json", "syncdir q"}
	if len(got) != len(all) {
		t.Fatalf("write operations:\n%s\nwant each of:\n%s", strings.Join(got, "\n"), strings.Join(all, "\n"))
	}
	for _, op := range all {
		if at[op] == 0 {
			t.Fatalf("no %q in:\n%s", op, strings.Join(got, "\n"))
		}
	}
	for _, before := range [][2]string{
		{"create tmp/.eml", "sync tmp/.eml"}, {"sync tmp/.eml", "rename tmp/.eml q/.eml"},
		{"create tmp/.json", "sync tmp/.json"}, {"sync tmp/.json", "rename tmp/.json q/.json"},
		{"rename tmp/.eml q/.eml", "rename tmp/.json q/.json"}, {"rename tmp/.json q/.json", "syncdir q"},
	} {
		if at[before[0]] > at[before[1]] {
			t.Errorf("%q came after %q:\n%s", before[0], before[1], strings.Join(got, "\n"))
		}
	}
	if got[len(got)-1] != "syncdir q" {
		t.Errorf("the last operation is %q, want the fsync of q/", got[len(got)-1])
	}
}

// TestEnqueueWriteFailureLeavesNothing injects ENOSPC at each step of an
// enqueue: the error comes back, nothing is left in q/ or tmp/, and the
// queue keeps working.
func TestEnqueueWriteFailureLeavesNothing(t *testing.T) {
	for _, step := range []string{"create tmp/.eml", "sync tmp/.eml", "rename tmp/.eml", "create tmp/.json",
		"sync tmp/.json", "rename tmp/.json", "syncdir q"} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			o, _ := testOptions(t, dir)
			fs := &recFS{failOn: step}
			o.FS = fs
			q := openQueue(t, o, &fakeDeliverer{})
			_, err := q.Enqueue(context.Background(), "c", "f@x", []string{"a@x"}, strings.NewReader("x\r\n"))
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Enqueue error = %v, want ENOSPC", err)
			}
			assertEmptyDir(t, filepath.Join(dir, "q"))
			assertEmptyDir(t, filepath.Join(dir, "tmp"))
			if len(q.List()) != 0 {
				t.Fatalf("failed enqueue is listed: %+v", q.List())
			}
			fs.mu.Lock()
			fs.failOn = ""
			fs.mu.Unlock()
			enqueue(t, q, "a@x") // the slot was given back
		})
	}
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("%s holds %v, want nothing", dir, names)
	}
}

func TestEnqueueBodyReadError(t *testing.T) {
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	q := openQueue(t, o, &fakeDeliverer{})
	body := iotest.TimeoutReader(strings.NewReader(strings.Repeat("line\r\n", 2000)))
	_, err := q.Enqueue(context.Background(), "c", "f@x", []string{"a@x"}, body)
	if !errors.Is(err, iotest.ErrTimeout) {
		t.Fatalf("Enqueue error = %v, want it to wrap the reader's error", err)
	}
	assertEmptyDir(t, filepath.Join(dir, "q"))
	assertEmptyDir(t, filepath.Join(dir, "tmp"))
}

func TestEnqueueFull(t *testing.T) {
	o, _ := testOptions(t, t.TempDir())
	o.MaxItems = 1
	q := openQueue(t, o, &fakeDeliverer{})
	enqueue(t, q, "a@x")
	_, err := q.Enqueue(context.Background(), "c", "f@x", []string{"a@x"}, strings.NewReader("x\r\n"))
	var full interface{ Full() bool }
	if !errors.Is(err, ErrFull) || !errors.As(err, &full) || !full.Full() {
		t.Fatalf("second Enqueue = %v, want ErrFull with Full()", err)
	}

	o2, _ := testOptions(t, t.TempDir())
	o2.MaxBytes = 10
	q2 := openQueue(t, o2, &fakeDeliverer{})
	_, err = q2.Enqueue(context.Background(), "c", "f@x", []string{"a@x"}, strings.NewReader(strings.Repeat("x", 11)))
	if !errors.Is(err, ErrFull) {
		t.Fatalf("Enqueue over max_bytes = %v, want ErrFull", err)
	}
	assertEmptyDir(t, filepath.Join(o2.Dir, "q"))
}

func TestEnvelopeOnDisk(t *testing.T) {
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.Route = func(from, rcpt string) []string {
		if strings.HasSuffix(rcpt, "@b.example") {
			return []string{"p2", "p1"}
		}
		return []string{"p1"}
	}
	q := openQueue(t, o, &fakeDeliverer{})
	id := enqueue(t, q, "x@a.example", "y@b.example")
	if !idPattern.MatchString(id) {
		t.Fatalf("id %q does not match %v", id, idPattern)
	}
	b, err := os.ReadFile(filepath.Join(dir, "q", id+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var it Item
	if err := json.Unmarshal(b, &it); err != nil {
		t.Fatal(err)
	}
	if it.V != 1 || it.ID != id || it.From != "app@example.com" || it.Client != "127.0.0.1" || it.Size != 21 {
		t.Fatalf("envelope header wrong: %+v", it)
	}
	if len(it.Rcpts) != 2 || strings.Join(it.Rcpts[1].Route, ",") != "p2,p1" || it.Rcpts[0].Status != Pending {
		t.Fatalf("recipients wrong: %+v", it.Rcpts)
	}
	body, _ := os.ReadFile(filepath.Join(dir, "q", id+".eml"))
	if string(body) != "Subject: hi\r\n\r\nbody\r\n" {
		t.Fatalf("body on disk = %q", body)
	}
}

func TestSecondOpenRefused(t *testing.T) {
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	openQueue(t, o, &fakeDeliverer{})
	_, err := Open(o, &fakeDeliverer{})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "in use by another tlsrelay") {
		t.Fatalf("second Open = %v, want a clear lock error", err)
	}
}

// TestDeliveredItemIsRemovedNotRewritten: once every recipient is
// delivered, the envelope is taken out of q/ (renamed into tmp/ for reuse,
// recycle.go), then the body, then q/ is fsynced, without a rewrite first:
// the removal is the durable record, and skipping the rewrite saves two
// fsyncs per message.
func TestDeliveredItemIsRemovedNotRewritten(t *testing.T) {
	o, _ := testOptions(t, t.TempDir())
	fs := &recFS{}
	o.FS = fs
	q := openQueue(t, o, &fakeDeliverer{})
	enqueue(t, q, "a@x", "b@x")
	fs.mu.Lock()
	fs.ops = nil
	fs.mu.Unlock()
	stop := runQueue(t, q)
	waitEmpty(t, q)
	stop() // Run returns after the removal's fsync of q/
	fs.mu.Lock()
	got := strings.Join(fs.ops, "\n")
	fs.mu.Unlock()
	if want := "rename q/.json tmp/\nrename q/.eml tmp/\nsyncdir q"; got != want {
		t.Fatalf("after delivery:\n%s\nwant:\n%s", got, want)
	}
}

// EnqueueRouted keeps the routes the relay resolved at RCPT; a nil one is
// resolved now, and a count that does not match the recipients is refused
// with nothing written.
func TestEnqueueRoutedKeepsRoutes(t *testing.T) {
	o, _ := testOptions(t, t.TempDir())
	q := openQueue(t, o, &fakeDeliverer{})
	ctx := context.Background()
	id, err := q.EnqueueRouted(ctx, "127.0.0.1", "a@example.com", []string{"b@example.net", "c@example.net"},
		[][]string{{"p2", "p3"}, nil}, strings.NewReader("Subject: x\r\n\r\nhi\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	it, err := q.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if got := [][]string{it.Rcpts[0].Route, it.Rcpts[1].Route}; !slices.EqualFunc(got, [][]string{{"p2", "p3"}, {"p1"}}, slices.Equal[[]string]) {
		t.Fatalf("routes = %v, want [[p2 p3] [p1]] (the given one, then Options.Route's)", got)
	}
	if _, err := q.EnqueueRouted(ctx, "127.0.0.1", "a@example.com", []string{"b@example.net"},
		[][]string{{"p2"}, {"p3"}}, strings.NewReader("x\r\n")); err == nil {
		t.Fatal("2 routes for 1 recipient: no error")
	}
	if n := len(q.List()); n != 1 {
		t.Fatalf("%d messages queued, want 1", n)
	}
}
