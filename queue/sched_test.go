package queue

import (
	"testing"
	"time"
)

// checkIndex fails unless every idle entry is in exactly one of the
// scheduler's heaps, at its recorded position, and no busy or removed one is.
func checkIndex(t *testing.T, q *Queue) {
	t.Helper()
	q.mu.Lock()
	defer q.mu.Unlock()
	inHeaps := 0
	for _, h := range append([]*entryHeap{q.waiting}, values(q.ready)...) {
		for i, e := range h.es {
			if e.heap != h || e.hidx != i {
				t.Fatalf("entry %s at %d of a heap records heap %p index %d", e.item.ID, i, e.heap, e.hidx)
			}
			if q.items[e.item.ID] != e || e.busy {
				t.Fatalf("entry %s is indexed but removed or busy", e.item.ID)
			}
			inHeaps++
		}
	}
	idle := 0
	for _, e := range q.items {
		if !e.busy {
			idle++
		}
	}
	if idle != inHeaps {
		t.Fatalf("%d idle entries, %d in the index", idle, inHeaps)
	}
}

func values(m map[string]*entryHeap) []*entryHeap {
	var hs []*entryHeap
	for _, h := range m {
		hs = append(hs, h)
	}
	return hs
}

// The index follows every change of schedule: enqueue, deferral, Retry,
// RetryAll, Delete, and delivery (the entry leaves it).
func TestSchedulerIndex(t *testing.T) {
	o, _ := testOptions(t, t.TempDir())
	o.Retry = Retry{Initial: time.Hour, Max: time.Hour, Factor: 2}
	d := &fakeDeliverer{fn: allResults(errTemp)}
	q := openQueue(t, o, d)
	var ids []string
	for range 20 {
		ids = append(ids, enqueue(t, q, "a@x"))
	}
	checkIndex(t, q)
	stop := runQueue(t, q)
	waitFor(t, q, func(items []Item) bool {
		for _, it := range items {
			if it.Rcpts[0].Attempts == 0 {
				return false
			}
		}
		return true
	})
	if err := q.Delete(ids[3]); err != nil {
		t.Fatal(err)
	}
	if err := q.Retry(ids[5]); err != nil {
		t.Fatal(err)
	}
	stop()
	checkIndex(t, q)
	q.RetryAll()
	checkIndex(t, q)
	d.setFn(nil)
	runQueue(t, q)
	waitEmpty(t, q)
	checkIndex(t, q)
	if q.waiting.Len() != 0 {
		t.Fatalf("%d entries left waiting in an empty queue", q.waiting.Len())
	}
}
