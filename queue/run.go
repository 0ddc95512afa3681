package queue

import (
	"context"
	"fmt"
	"slices"
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
		workers := q.workers() // SetLimits may change it
		if running >= workers {
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
		started, wait := q.dispatch(dctx, workers-running, done)
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
		q.qsync.laterErr(err)
	}
	return nil
}

// dispatch starts up to free workers on due items, oldest first (see
// sched.go), and returns how many it started and how long until the next
// item is due.
func (q *Queue) dispatch(ctx context.Context, free int, done chan<- struct{}) (int, time.Duration) {
	now := q.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.promoteLocked(now)
	picked, wait := q.pickLocked(free, now, maxWait)
	if q.waiting.Len() > 0 {
		wait = min(wait, q.waiting.es[0].dueAt.Sub(now))
	}
	for _, e := range picked {
		e.busy = true
		go q.work(ctx, e, done)
	}
	return len(picked), wait
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
		if q.items[e.item.ID] == e { // not retired: back into the index
			q.indexLocked(e)
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
			q.maybeSweepDead()
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
