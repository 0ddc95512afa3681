package queue

import (
	"container/heap"
	"time"
)

// The scheduler's index of idle items.
//
// dispatch used to scan every queued item and sort the due ones on each
// pass; with a backlog (an outage, a rate-limited provider) that was most of
// the relay's CPU: 39 % in a profile of 10,000 messages draining after an
// outage. Now every idle entry sits in one heap: waiting (not due yet,
// soonest first) or ready[provider] (due, oldest first). A pass moves what
// came due from waiting to ready and picks, up to the free workers, the
// oldest head among the providers that have a free connection and whose
// rate allows an attempt: O(log n) per item moved or picked, O(providers)
// per pick. An entry leaves the index while a worker has it (busy) and goes
// back when the worker is done, or when an operation changes its schedule.
// All of it is guarded by Queue.mu.

// entryHeap is a heap of entries that keeps each entry's position in it.
type entryHeap struct {
	es   []*entry
	less func(a, b *entry) bool
}

func (h *entryHeap) Len() int           { return len(h.es) }
func (h *entryHeap) Less(i, j int) bool { return h.less(h.es[i], h.es[j]) }
func (h *entryHeap) Swap(i, j int) {
	h.es[i], h.es[j] = h.es[j], h.es[i]
	h.es[i].hidx, h.es[j].hidx = i, j
}

func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.heap, e.hidx = h, len(h.es)
	h.es = append(h.es, e)
}

func (h *entryHeap) Pop() any {
	n := len(h.es) - 1
	e := h.es[n]
	h.es[n] = nil
	h.es = h.es[:n]
	e.heap, e.hidx = nil, -1
	return e
}

func newWaitingHeap() *entryHeap {
	return &entryHeap{less: func(a, b *entry) bool {
		if !a.dueAt.Equal(b.dueAt) {
			return a.dueAt.Before(b.dueAt)
		}
		return a.item.ID < b.item.ID
	}}
}

func newReadyHeap() *entryHeap {
	return &entryHeap{less: func(a, b *entry) bool { return a.item.ID < b.item.ID }}
}

// indexLocked (re)places an idle entry in the index by when it is due.
func (q *Queue) indexLocked(e *entry) {
	q.unindexLocked(e)
	e.dueAt = q.dueAtLocked(e)
	heap.Push(q.waiting, e)
}

// unindexLocked takes an entry out of the index, if it is in it.
func (q *Queue) unindexLocked(e *entry) {
	if e.heap != nil {
		heap.Remove(e.heap, e.hidx)
	}
}

// dueAtLocked is when an entry is next due: its earliest recipient, or its
// max_age deadline if that comes first (expire on time, even if max_age
// was lowered since the schedule was saved), and never before its hold
// (after a fault). An item whose recipients are all final is due at its
// hold: it is to be retired.
func (q *Queue) dueAtLocked(e *entry) time.Time {
	t, ok := e.item.due()
	if dl := e.item.since().Add(q.opts.MaxAge); ok && dl.Before(t) {
		t = dl
	}
	if !ok || e.hold.After(t) {
		t = e.hold
	}
	return t
}

// promoteLocked moves the entries due at now from waiting to the ready heap
// of the provider of their first due recipients ("" if none is due: the
// item expires or is retired, which needs no connection).
func (q *Queue) promoteLocked(now time.Time) {
	for q.waiting.Len() > 0 && !q.waiting.es[0].dueAt.After(now) {
		e := heap.Pop(q.waiting).(*entry)
		p := ""
		if gs := dueGroups(e.item, now); len(gs) > 0 {
			p = gs[0].provider
		}
		e.prov = p
		h := q.ready[p]
		if h == nil {
			h = newReadyHeap()
			q.ready[p] = h
		}
		heap.Push(h, e)
	}
}

// pickLocked takes, oldest first, up to free ready entries whose provider
// has a free connection and whose rate allows an attempt now (one per pass
// for a rate-limited provider), so that a slow or rate-limited provider
// cannot take every worker from the others. It also returns how long until
// the next rate slot of a provider it skipped for its rate, if sooner than
// wait.
func (q *Queue) pickLocked(free int, now time.Time, wait time.Duration) ([]*entry, time.Duration) {
	var picked []*entry
	used := map[string]int{}
	for len(picked) < free {
		var best *entry
		for p, h := range q.ready {
			if h.Len() == 0 {
				continue
			}
			if p != "" {
				pace := q.pacers[p]
				if d := pace.delay(now); d > 0 || (pace != nil && used[p] > 0) {
					wait = min(wait, max(d, pace.interval))
					continue
				}
				if l := q.limitLocked(p); l.inflight+used[p] >= l.limit {
					continue // a worker finishing there wakes the scheduler
				}
			}
			if head := h.es[0]; best == nil || head.item.ID < best.item.ID {
				best = head
			}
		}
		if best == nil {
			break
		}
		used[best.prov]++
		heap.Pop(best.heap)
		picked = append(picked, best)
	}
	return picked, wait
}
