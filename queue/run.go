package queue

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// maxWait bounds the scheduler's sleep, so that a clock jump is noticed.
const maxWait = time.Minute

// Run delivers queued mail until ctx ends. It then starts no new delivery,
// lets those in flight go on for Options.StopTimeout (after which their
// context is cancelled), and returns once they are all done and every
// removal is durable. What was not delivered stays on disk for the next
// start.
func (q *Queue) Run(ctx context.Context) error {
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	done := make(chan struct{}, q.opts.Workers)
	timer := time.NewTimer(0)
	defer timer.Stop()
	running := 0
	for ctx.Err() == nil {
		if running >= q.opts.Workers {
			// No worker is free: nothing can start, so do not scan the
			// queue on every new message (q.wake) but wait for a worker.
			// The dispatch after it sees every change made meanwhile.
			select {
			case <-ctx.Done():
			case <-done:
				running--
			}
			continue
		}
		started, wait := q.dispatch(dctx, q.opts.Workers-running, done)
		running += started
		timer.Reset(wait)
		select {
		case <-ctx.Done():
		case <-q.wake:
		case <-timer.C:
		case <-done:
			running--
		}
	}
	stop := time.AfterFunc(q.opts.StopTimeout, cancel)
	defer stop.Stop()
	for ; running > 0; running-- {
		<-done
	}
	if err := q.qsync.Flush(); err != nil {
		q.log.Error("cannot make the removal of delivered messages durable; after a crash they may be delivered again", "error", err)
	}
	return nil
}

// dispatch starts up to free workers on due items, oldest first, and returns
// how many it started and how long until the next item is due.
func (q *Queue) dispatch(ctx context.Context, free int, done chan<- struct{}) (int, time.Duration) {
	now := q.now()
	wait := maxWait
	q.mu.Lock()
	defer q.mu.Unlock()
	var due []*entry
	for _, e := range q.items {
		if e.busy {
			continue
		}
		t, ok := e.item.due()
		if dl := e.item.since().Add(q.opts.MaxAge); ok && dl.Before(t) {
			t = dl // expire on time, even if max_age was lowered since t was saved
		}
		if !ok || e.hold.After(t) {
			t = e.hold // all final (retire now) or held after a fault
		}
		if !t.After(now) {
			due = append(due, e)
		} else if d := t.Sub(now); d < wait {
			wait = d
		}
	}
	// Oldest first. fairLocked stops once it has picked free items, so
	// the few oldest usually decide it: sort only those (a backlog of
	// thousands was sorted whole on every dispatch), and all of them only
	// if fairLocked skipped so many that it reached the end of the few.
	byID := func(a, b *entry) int { return strings.Compare(a.item.ID, b.item.ID) }
	few := oldestEntries(due, 4*free+8, byID)
	picked, fwait := q.fairLocked(few, free, now, wait)
	if len(picked) < free && len(few) < len(due) {
		slices.SortFunc(due, byID)
		picked, fwait = q.fairLocked(due, free, now, wait)
	}
	due, wait = picked, fwait
	for _, e := range due {
		e.busy = true
		go q.work(ctx, e, done)
	}
	return len(due), wait
}

// fairLocked picks, oldest first, at most free items whose provider has a
// free connection and whose rate allows an attempt now, so that a slow or
// rate-limited provider cannot take every worker from the others. It also
// shortens wait to the next rate slot it skipped for. Hold q.mu.
func (q *Queue) fairLocked(due []*entry, free int, now time.Time, wait time.Duration) ([]*entry, time.Duration) {
	picked := due[:0]
	used := map[string]int{}
	for _, e := range due {
		if len(picked) >= free {
			break
		}
		p := ""
		if gs := dueGroups(e.item, now); len(gs) > 0 {
			p = gs[0].provider
		}
		if p != "" {
			pace := q.pacers[p]
			if d := pace.delay(now); d > 0 || (pace != nil && used[p] > 0) {
				wait = min(wait, max(d, pace.interval)) // one slot per pass
				continue
			}
			sem := q.semLocked(p)
			if len(sem)+used[p] >= cap(sem) {
				continue // a worker finishing there wakes the scheduler
			}
			used[p]++
		}
		picked = append(picked, e)
	}
	return picked, wait
}

// work runs one item's deliveries. A panic is recovered: the item stays on
// disk and is held back for one retry interval.
func (q *Queue) work(ctx context.Context, e *entry, done chan<- struct{}) {
	defer func() {
		if r := recover(); r != nil {
			q.log.Error("delivery panicked; the message stays queued", "id", e.item.ID, "panic", fmt.Sprint(r))
			e.hold = q.now().Add(q.opts.Retry.Initial)
		}
		q.mu.Lock()
		e.busy = false
		if e.retry {
			e.retry = false
			q.retryLocked(e)
		}
		q.notifyLocked()
		q.mu.Unlock()
		done <- struct{}{}
	}()
	// The worker changes a private copy and publishes it after each save,
	// so List and WaitFor never see a half-updated item.
	it := new(Item)
	*it = e.item.clone()
	q.process(ctx, it, func() { q.publish(e, it) })
	q.warnDelay(it, func() { q.publish(e, it) })
	if fin, failed := it.done(); fin {
		if err := q.retire(it, failed); err != nil {
			q.log.Error("cannot take finished message out of the spool; will try again", "id", it.ID, "error", err)
			e.hold = q.now().Add(q.opts.Retry.Initial)
			return
		}
		if failed {
			q.log.Warn("dead", "id", it.ID, "dir", q.path(dirDead, it.ID, ""))
			q.notify(it, Failed, q.path(dirDead, it.ID, ".eml"))
		}
		q.mu.Lock()
		delete(q.items, it.ID)
		q.bytes -= it.Size
		q.mu.Unlock()
	}
}

// process makes every attempt that is due for one item: one per provider,
// then again for recipients moved to their next provider, until none is due.
// saved is called after each change has been written to disk.
func (q *Queue) process(ctx context.Context, it *Item, saved func()) {
	rounds := 1
	for _, r := range it.Rcpts {
		rounds = max(rounds, len(r.Route)+1)
	}
	for ; rounds > 0 && ctx.Err() == nil; rounds-- {
		now := q.now()
		if now.Sub(it.since()) >= q.opts.MaxAge && q.expire(it) {
			q.save(it, saved)
		}
		groups := dueGroups(it, now)
		if len(groups) == 0 {
			return
		}
		for _, g := range groups {
			if ctx.Err() != nil {
				return
			}
			q.attempt(ctx, it, g)
			if fin, failed := it.done(); fin && !failed {
				// Every recipient is delivered: the envelope's removal
				// (retire) is the durable record, so writing it first
				// would only add two fsyncs and widen the window in which
				// a crash delivers twice.
				saved()
				continue
			}
			q.save(it, saved)
		}
	}
}

// warnDelay sends the one delay warning a message gets, once it is older
// than Bounce.DelayWarning with recipients still deferred.
func (q *Queue) warnDelay(it *Item, saved func()) {
	dw := q.opts.Bounce.DelayWarning
	if dw <= 0 || it.Warned || q.now().Sub(it.since()) < dw || q.opts.Bounce.target(it) == "" {
		return
	}
	if slices.IndexFunc(it.Rcpts, func(r Rcpt) bool { return r.Status == Deferred }) < 0 {
		return
	}
	q.notify(it, Deferred, q.path(dirQueue, it.ID, ".eml"))
	it.Warned = true
	q.save(it, saved)
}

// save writes an item's state. A failure is logged and delivery goes on:
// the worst outcome is a second delivery after a restart.
func (q *Queue) save(it *Item, saved func()) {
	if err := q.persist(it); err != nil {
		q.log.Error("cannot save delivery state; a restart may deliver again", "id", it.ID, "error", err)
	}
	saved()
}

// publish makes a worker's copy of an item visible to List and WaitFor.
func (q *Queue) publish(e *entry, it *Item) {
	c := it.clone()
	q.mu.Lock()
	e.item = &c
	q.notifyLocked()
	q.mu.Unlock()
}

// group is the due recipients of one item that share a provider.
type group struct {
	provider string
	idx      []int // indexes into Item.Rcpts
}

// dueGroups groups the due recipients by their current provider, in the
// order the providers first appear.
func dueGroups(it *Item, now time.Time) []group {
	var gs []group
	for i, r := range it.Rcpts {
		if r.Status.Final() || r.NextAttempt.After(now) {
			continue
		}
		p := r.Route[r.Index]
		k := slices.IndexFunc(gs, func(g group) bool { return g.provider == p })
		if k < 0 {
			gs = append(gs, group{provider: p})
			k = len(gs) - 1
		}
		gs[k].idx = append(gs[k].idx, i)
	}
	return gs
}

// oldestEntries returns, in a new slice sorted by cmp, the m smallest of
// es (all of them if there are no more than m). es is not changed.
func oldestEntries(es []*entry, m int, cmp func(a, b *entry) int) []*entry {
	out := make([]*entry, 0, min(m, len(es)))
	for _, e := range es {
		if len(out) == m && cmp(e, out[m-1]) >= 0 {
			continue
		}
		i, _ := slices.BinarySearchFunc(out, e, cmp)
		if len(out) < m {
			out = slices.Insert(out, i, e)
			continue
		}
		copy(out[i+1:], out[i:m-1]) // drop the largest
		out[i] = e
	}
	return out
}
