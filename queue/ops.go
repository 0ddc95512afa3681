package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Errors of the operator commands.
var (
	ErrNotFound = errors.New("no such message")
	ErrBusy     = errors.New("message is being delivered right now; try again in a moment")
)

// Get returns a copy of the queued item id.
func (q *Queue) Get(id string) (Item, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.items[id]
	if !ok {
		return Item{}, fmt.Errorf("%w %q in the queue", ErrNotFound, id)
	}
	return e.item.clone(), nil
}

// busyWait is how long Retry and Delete wait for a delivery in progress to
// end before they give up with ErrBusy.
const busyWait = 10 * time.Second

// idleLocked returns id's entry once no worker holds it, waiting up to
// busyWait. It returns with q.mu held, whatever the outcome.
func (q *Queue) idleLocked(id string) (*entry, error) {
	deadline := time.Now().Add(busyWait)
	for {
		e, ok := q.items[id]
		switch {
		case !ok && q.unloaded > 0:
			return nil, fmt.Errorf("%w %q in the queue yet: the spool is still loading (%d messages to go); try again",
				ErrNotFound, id, q.unloaded)
		case !ok:
			return nil, fmt.Errorf("%w %q in the queue", ErrNotFound, id)
		case !e.busy:
			return e, nil
		case !time.Now().Before(deadline):
			return nil, ErrBusy
		}
		ch := q.changed
		q.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(time.Until(deadline)):
		}
		q.mu.Lock()
	}
}

// Retry makes every unfinished recipient of id due now and saves that, so
// it holds across a restart too. If the message is in delivery, it waits
// for that attempt to end (ErrBusy after 10s).
func (q *Queue) Retry(id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, err := q.idleLocked(id)
	if err != nil {
		return err
	}
	q.retryLocked(e)
	q.notifyLocked()
	return q.persist(e.item)
}

// RetryAll makes every unfinished recipient of every message due now (a
// message in delivery, as soon as that attempt ends), and returns how many
// messages that touched. Unlike
// Retry it changes only the schedule in memory (rewriting every envelope
// would stall new mail): after a restart the saved schedule applies.
func (q *Queue) RetryAll() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, e := range q.items {
		if e.busy {
			e.retry = true // its worker applies it when the attempt ends
		} else {
			q.retryLocked(e)
		}
	}
	n := len(q.items)
	q.notifyLocked()
	return n
}

// retryLocked makes an item due now in memory.
func (q *Queue) retryLocked(e *entry) {
	it := e.item.clone()
	now := q.now().UTC()
	for i := range it.Rcpts {
		if r := &it.Rcpts[i]; !r.Status.Final() && r.NextAttempt.After(now) {
			r.NextAttempt = now
		}
	}
	e.item, e.hold = &it, now
	if !e.busy {
		q.indexLocked(e)
	}
}

// Delete removes a queued message for good, body and envelope. It is not
// delivered and no bounce is sent. Like Retry, it waits for a delivery in
// progress to end.
func (q *Queue) Delete(id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, err := q.idleLocked(id)
	if err != nil {
		return err
	}
	if err := q.fs.Remove(q.path(dirQueue, id, ".json")); err != nil {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	q.fs.Remove(q.path(dirQueue, id, ".eml"))
	q.fs.SyncDir(filepath.Join(q.opts.Dir, dirQueue))
	q.unindexLocked(e)
	delete(q.items, id)
	q.bytes -= e.item.Size
	q.log.Warn("deleted", "id", id, "by", "operator")
	q.notifyLocked()
	return nil
}

// Dead returns the dead-lettered messages, oldest first. Unreadable
// envelopes in dead/ are skipped and logged.
func (q *Queue) Dead() ([]Item, error) {
	dir := filepath.Join(q.opts.Dir, dirDead)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Item
	for _, ent := range ents {
		id, ok := strings.CutSuffix(ent.Name(), ".json")
		if !ok || !idPattern.MatchString(id) {
			continue
		}
		it, err := q.readDead(id)
		if err != nil {
			q.log.Warn("unreadable dead letter", "id", id, "error", err)
			continue
		}
		out = append(out, it)
	}
	sortItems(out)
	return out, nil
}

func (q *Queue) readDead(id string) (Item, error) {
	b, err := readOwned(q.path(dirDead, id, ".json"))
	if errors.Is(err, os.ErrNotExist) {
		return Item{}, fmt.Errorf("%w %q in dead letters", ErrNotFound, id)
	}
	if err != nil {
		return Item{}, err
	}
	var it Item
	if err := json.Unmarshal(b, &it); err != nil {
		return Item{}, fmt.Errorf("dead letter %s: %w", id, err)
	}
	return it, nil
}

// GetDead returns one dead-lettered message.
func (q *Queue) GetDead(id string) (Item, error) {
	if !idPattern.MatchString(id) {
		return Item{}, fmt.Errorf("%w %q in dead letters", ErrNotFound, id)
	}
	return q.readDead(id)
}

// Requeue moves a dead letter back into the queue: its failed recipients
// become pending again from the first provider of their route, and its
// max_age counts from now. Delivered recipients are not sent again.
func (q *Queue) Requeue(id string) error {
	it, err := q.GetDead(id)
	if err != nil {
		return err
	}
	now := q.now().UTC()
	for i := range it.Rcpts {
		if r := &it.Rcpts[i]; r.Status == Failed {
			r.Status, r.Index, r.NextAttempt = Pending, 0, now
		}
	}
	it.Requeued = now
	// The body must be the relay's own regular file: a link planted in
	// dead/ would be moved into the queue and its target sent.
	body, err := openOwned(q.path(dirDead, id, ".eml"))
	if err != nil {
		return fmt.Errorf("requeue %s: %w", id, err)
	}
	body.Close()
	if err := q.reserve(); err != nil {
		return err
	}
	if err := q.fs.Rename(q.path(dirDead, id, ".eml"), q.path(dirQueue, id, ".eml")); err != nil {
		q.release(0)
		return fmt.Errorf("requeue %s: %w", id, err)
	}
	// The new envelope lands in q/ (the commit), then the old one leaves dead/.
	if err := q.persist(&it); err != nil {
		q.fs.Rename(q.path(dirQueue, id, ".eml"), q.path(dirDead, id, ".eml"))
		q.release(0)
		return fmt.Errorf("requeue %s: %w", id, err)
	}
	q.fs.Remove(q.path(dirDead, id, ".json"))
	q.fs.SyncDir(filepath.Join(q.opts.Dir, dirDead))
	q.mu.Lock()
	q.bytes += it.Size
	q.mu.Unlock()
	q.add(&it)
	q.log.Info("requeued", "id", id, "by", "operator")
	return nil
}

// Stats summarises the queue for metrics and readiness.
type Stats struct {
	Items   int       // messages in q/ (read so far, during a background load)
	Bytes   int64     // their size
	Oldest  time.Time // arrival of the oldest; zero when empty
	Loading int       // envelopes found at start and not read yet
}

// Stats returns the queue's size and age without copying its items.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := Stats{Items: len(q.items), Bytes: q.bytes, Loading: q.unloaded}
	for _, e := range q.items {
		if s.Oldest.IsZero() || e.item.Arrived.Before(s.Oldest) {
			s.Oldest = e.item.Arrived
		}
	}
	return s
}

// CheckWritable proves the spool takes writes: it creates, syncs and
// removes a file in tmp/. For readiness probes.
func (q *Queue) CheckWritable() error {
	name := filepath.Join(q.opts.Dir, dirTmp, "probe-"+q.newID())
	f, err := q.fs.Create(name)
	if err != nil {
		return fmt.Errorf("spool not writable: %w", err)
	}
	_, err = f.Write([]byte("ok"))
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	q.fs.Remove(name)
	if err != nil {
		return fmt.Errorf("spool not writable: %w", err)
	}
	return nil
}
