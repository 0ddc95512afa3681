package admin

import (
	"context"
	"errors"
	"fmt"

	"github.com/tlsrelay/tlsrelay/delivery"
	"github.com/tlsrelay/tlsrelay/queue"
)

// API is what `tlsrelay queue` does, online (Client, through a running
// relay's control socket) or offline (Offline, on the spool itself).
type API interface {
	// Page returns one page of the queue (or of the dead letters): see
	// page.go; Each walks them all.
	Page(ctx context.Context, dead bool, after string, limit int) (Page, error)
	Show(ctx context.Context, id string) (item queue.Item, dead bool, err error)
	Retry(ctx context.Context, id string) (int, error) // id "" = all
	Delete(ctx context.Context, id string) error
	Requeue(ctx context.Context, id string) error
	Flush(ctx context.Context, wait string) (FlushResult, error)
	Close() error
}

var (
	_ API = (*Client)(nil)
	_ API = Offline{}
)

// Open reaches the relay that runs on the spool dir, or, when none does,
// the spool itself.
func Open(ctx context.Context, dir string) (API, error) {
	c := NewClient(dir)
	err := c.Ping(ctx)
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, ErrNoServer) {
		return nil, err
	}
	q, err := OpenSpool(dir, func(string, string) []string { return nil })
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	return Offline{q}, nil
}

// OpenSpool opens the spool directly when no relay runs. Its Deliverer is
// never called: the queue is not Run.
func OpenSpool(dir string, route func(from, rcpt string) []string) (*queue.Queue, error) {
	q, err := queue.Open(queue.Options{Dir: dir, Route: route}, noDeliverer{})
	if errors.Is(err, queue.ErrLocked) {
		return nil, fmt.Errorf("a relay holds %s but does not answer on %s; is it starting or stopping? %w",
			dir, SocketPath(dir), err)
	}
	return q, err
}

type noDeliverer struct{}

func (noDeliverer) Deliver(context.Context, string, *delivery.Message, []string) []delivery.Result {
	panic("tlsrelay: the offline queue delivers nothing")
}

// Offline works on the spool itself, holding its lock.
type Offline struct{ Q *queue.Queue }

func (a Offline) Show(_ context.Context, id string) (queue.Item, bool, error) {
	it, err := a.Q.Get(id)
	if err == nil {
		return it, false, nil
	}
	if it, err2 := a.Q.GetDead(id); err2 == nil {
		return it, true, nil
	}
	return it, false, err
}

func (a Offline) Retry(_ context.Context, id string) (int, error) {
	if id != "" {
		return 1, a.Q.Retry(id)
	}
	// Offline, each retry is saved, so that the next start honours it.
	n := 0
	for _, it := range a.Q.List() {
		if err := a.Q.Retry(it.ID); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (a Offline) Delete(_ context.Context, id string) error  { return a.Q.Delete(id) }
func (a Offline) Requeue(_ context.Context, id string) error { return a.Q.Requeue(id) }
func (Offline) Flush(context.Context, string) (FlushResult, error) {
	return FlushResult{}, errors.New("flush delivers mail, so it needs a running relay (tlsrelay serve); " +
		"none answers on this spool")
}
func (a Offline) Close() error { return a.Q.Close() }
