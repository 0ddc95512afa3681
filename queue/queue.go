// Package queue is tlsrelay's durable spool and delivery scheduler. Of this
// project it imports only the delivery contract (docs/design.md, "Packages
// and imports").
//
// Contract:
//   - Enqueue returns nil only after the message body (<id>.eml) and its
//     envelope (<id>.json) are fsynced, renamed into <dir>/q/ and the directory
//     fsynced. A crash at any moment loses no message that Enqueue accepted.
//   - Each recipient carries its own route (provider names: the relay's,
//     resolved at RCPT and handed to EnqueueRouted, else Options.Route's at
//     enqueue time) and status. The queue groups the due
//     recipients of a message by provider, makes one attempt per group
//     through the delivery.Deliverer, moves recipients that failed temporarily to the
//     next provider of their route, and when the route is exhausted defers them
//     with Backoff. A permanent failure fails that recipient only.
//   - An item with all recipients delivered is removed; one with a failed
//     recipient (permanent, or older than MaxAge) moves to <dir>/dead/.
//   - Delivery is at least once: a crash after a provider's 250 and before
//     the envelope is rewritten delivers that recipient again on restart.
//   - One item is in at most one delivery at a time.
package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlsrelay/tlsrelay/delivery"
)

// Options configure a Queue. Dir and Route are required.
type Options struct {
	Dir      string
	Route    func(from, rcpt string) []string // provider names for a recipient, in order
	Retry    Retry                            // zero = DefaultRetry
	MaxAge   time.Duration                    // then dead-letter; 0 = 120h
	MaxItems int                              // 0 = no limit
	MaxBytes int64                            // 0 = no limit
	Workers  int                              // concurrent deliveries; 0 = 4
	Bounce   Bounce                           // delivery status notifications; zero = none
	// DeadMaxAge and DeadMaxBytes bound dead/ (deadsweep.go); 0 = no limit.
	DeadMaxAge   time.Duration
	DeadMaxBytes int64
	// MaxConnections bounds concurrent attempts per provider (absent = 4).
	MaxConnections map[string]int
	// Rates paces each provider's attempts (absent = no limit). New mail
	// is still accepted: it waits in the spool.
	Rates map[string]Rate
	// StopTimeout is how long in-flight deliveries may go on after Run's
	// context ends; then their context is cancelled. 0 = 30s.
	StopTimeout time.Duration
	Now         func() time.Time // clock seam; nil = time.Now
	Rand        func() float64   // jitter source in [0,1); nil = math/rand/v2
	FS          FS               // write seam; nil = OSFS
	Log         *slog.Logger     // nil = discard
	// LoadInBackground makes Open return once q/ is listed and read the
	// envelopes found there in the background (load.go): Enqueue works at
	// once, and the old messages join the queue, oldest first, as they are
	// read. Until then List shows only those read, Stats.Loading counts the
	// rest (they count against MaxItems; their bytes against MaxBytes only
	// once read), and WaitFor first waits for the load to end.
	LoadInBackground bool
}

// Queue is a durable spool plus the workers that empty it.
type Queue struct {
	opts Options
	d    delivery.Deliverer
	fs   FS
	log  *slog.Logger
	lock *os.File

	mu    sync.Mutex
	items map[string]*entry
	// bounceLimit caps notices per sender domain (dsnlimit.go).
	bounceLimit domainLimiter
	deadSwept   time.Time     // the last sweep of dead/ (deadsweep.go), under mu
	bytes       int64         // sizes of items in q/, plus reservations
	pending     int           // enqueues in progress (reserved item slots)
	changed     chan struct{} // closed and replaced on every state change
	wake        chan struct{} // tells the scheduler to look again
	closed      bool
	limits      map[string]*connLimit // per provider (limits.go)
	qsync       *dirSyncer            // fsyncs of q/ (Enqueue, persist, retire), shared (group commit)
	recycle     *recycler             // delivered messages' files, kept in tmp/ for reuse
	// A background load (Options.LoadInBackground): loading is closed when
	// it ends (nil: none ran), unloaded counts the envelopes it has yet to
	// add (guarded by mu), stopLoad asks it to stop (Close).
	loading   chan struct{}
	failing   map[string]bool       // providers whose last attempt failed (recover.go); guarded by mu
	recovered map[string]time.Time  // when each provider was last recovered; guarded by mu
	waiting   *entryHeap            // idle entries not due yet (sched.go); guarded by mu
	ready     map[string]*entryHeap // idle due entries by provider (sched.go); guarded by mu
	unloaded  int
	stopLoad  atomic.Bool
	pacers    map[string]*pacer // nil entries: no rate limit
}

// entry is an item with its scheduling state; guarded by Queue.mu, except
// that while busy the worker owns it.item.
type entry struct {
	item  *Item
	busy  bool
	hold  time.Time // not before this time (after a panic or a failed retire)
	retry bool      // an operator asked for a retry during the attempt
	// The scheduler's index (sched.go): the heap holding the entry while
	// it is idle, its position there, when it is due, and, once due, the
	// provider of its first due recipients.
	heap  *entryHeap
	hidx  int
	dueAt time.Time
	prov  string
}

// Open prepares dir (q/, tmp/, dead/, quarantine/, lock), takes the lock,
// and loads what a previous run left: pending items resume, partial writes
// are cleaned, broken files go to quarantine/. It does not start delivery;
// call Run.
func Open(o Options, d delivery.Deliverer) (*Queue, error) {
	if o.Dir == "" || o.Route == nil || d == nil {
		return nil, errors.New("queue: Open needs Options.Dir, Options.Route and a delivery.Deliverer")
	}
	setDefaults(&o)
	q := &Queue{
		opts: o, d: d, fs: o.FS, log: o.Log,
		items: map[string]*entry{}, changed: make(chan struct{}), wake: make(chan struct{}, 1),
		limits:  map[string]*connLimit{},
		pacers:  map[string]*pacer{},
		waiting: newWaitingHeap(), ready: map[string]*entryHeap{},
	}
	for name, r := range o.Rates {
		q.pacers[name] = newPacer(r)
	}
	for _, sub := range []string{dirQueue, dirTmp, dirDead, dirQuarantine} {
		if err := os.MkdirAll(filepath.Join(o.Dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("queue: cannot create spool directory: %w", err)
		}
	}
	if err := q.checkSpoolDirs(); err != nil {
		return nil, err
	}
	lock, err := lockDir(filepath.Join(o.Dir, "lock"))
	if err != nil {
		return nil, err
	}
	q.lock = lock
	qdir := filepath.Join(o.Dir, dirQueue)
	q.qsync = newDirSyncer(func() error { return q.fs.SyncDir(qdir) })
	q.qsync.laterErr = func(err error) {
		q.log.Error("cannot make the removal of delivered messages durable; after a crash they may be delivered again", "error", err)
	}
	q.recycle = &recycler{dir: filepath.Join(o.Dir, dirTmp)}
	if err := q.load(o.LoadInBackground); err != nil {
		lock.Close()
		return nil, err
	}
	q.maybeSweepDead()
	return q, nil
}

func setDefaults(o *Options) {
	if o.Retry == (Retry{}) {
		o.Retry = DefaultRetry
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 120 * time.Hour
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.FS == nil {
		o.FS = OSFS{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

func (q *Queue) now() time.Time { return q.opts.Now() }

// Close stops a background load, waits for it, and releases the spool
// lock. Call it after Run has returned.
func (q *Queue) Close() error {
	q.stopLoad.Store(true)
	if q.loading != nil {
		<-q.loading // it stops after the chunk it is reading
	}
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	return q.lock.Close()
}

// reserve claims an item slot for an enqueue in progress, or returns ErrFull.
func (q *Queue) reserve() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return errors.New("queue: closed")
	}
	if q.opts.MaxItems > 0 && len(q.items)+q.pending+q.unloaded >= q.opts.MaxItems {
		return &fullError{reason: fmt.Sprintf("%d messages queued (queue.max_items)", len(q.items))}
	}
	if q.opts.MaxBytes > 0 && q.bytes >= q.opts.MaxBytes {
		return &fullError{reason: fmt.Sprintf("%d bytes queued (queue.max_bytes)", q.bytes)}
	}
	q.pending++
	return nil
}

// release gives back a reserved slot and size after a failed enqueue.
func (q *Queue) release(size int64) {
	q.mu.Lock()
	q.pending--
	q.bytes -= size
	q.mu.Unlock()
}

// add makes a committed item visible to the scheduler.
func (q *Queue) add(it *Item) {
	q.mu.Lock()
	q.pending--
	e := &entry{item: it}
	q.items[it.ID] = e
	q.indexLocked(e)
	q.notifyLocked()
	q.mu.Unlock()
}

// notifyLocked wakes the scheduler and everyone in WaitFor. Hold q.mu.
func (q *Queue) notifyLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// List returns a copy of every item in q/, oldest first.
func (q *Queue) List() []Item {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.listLocked()
}

func (q *Queue) listLocked() []Item {
	out := make([]Item, 0, len(q.items))
	for _, e := range q.items {
		out = append(out, e.item.clone())
	}
	sortItems(out)
	return out
}

// WaitFor blocks until cond, called with the current items, returns true, or
// ctx ends. It is how a caller (a test, `queue flush -wait`) waits for
// deliveries without polling.
func (q *Queue) WaitFor(ctx context.Context, cond func([]Item) bool) error {
	if q.loading != nil { // "empty" means nothing left, loaded or not
		select {
		case <-q.loading:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for {
		q.mu.Lock()
		items, ch := q.listLocked(), q.changed
		q.mu.Unlock()
		if cond(items) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// openBody opens a queued message's body for a delivery attempt.
func (q *Queue) openBody(id string) (io.ReadCloser, error) {
	return openOwned(q.path(dirQueue, id, ".eml"))
}
