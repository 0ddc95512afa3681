package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"

	"github.com/tlsrelay/tlsrelay/admin"
	"github.com/tlsrelay/tlsrelay/queue"
)

// queueAPI is what `tlsrelay queue` does, online (through a running relay's
// control socket) or offline (on the spool directly, when no relay runs).
type queueAPI interface {
	// list returns the queued messages, and how many more a relay just
	// started has yet to read from its spool (admin.LoadingHeader).
	list(ctx context.Context) (items []queue.Item, loading int, err error)
	show(ctx context.Context, id string) (item queue.Item, dead bool, err error)
	retry(ctx context.Context, id string) (int, error) // id "" = all
	remove(ctx context.Context, id string) error
	dead(ctx context.Context) ([]queue.Item, error)
	requeue(ctx context.Context, id string) error
	flush(ctx context.Context, wait string) (admin.FlushResult, error)
	close() error
}

// onlineAPI goes through the control socket.
type onlineAPI struct{ c *controlClient }

func (a onlineAPI) list(ctx context.Context) (items []queue.Item, loading int, err error) {
	h, err := a.c.doHeader(ctx, "GET", "/queue", &items)
	if err == nil {
		loading, _ = strconv.Atoi(h.Get(admin.LoadingHeader))
	}
	return items, loading, err
}

func (a onlineAPI) show(ctx context.Context, id string) (it queue.Item, dead bool, err error) {
	p := url.PathEscape(id)
	if err = a.c.do(ctx, "GET", "/queue/"+p, &it); err == nil {
		return it, false, nil
	}
	if err2 := a.c.do(ctx, "GET", "/dead/"+p, &it); err2 == nil {
		return it, true, nil
	}
	return it, false, err
}

func (a onlineAPI) retry(ctx context.Context, id string) (int, error) {
	var d struct{ Messages int }
	path := "/queue/retry"
	if id != "" {
		path = "/queue/" + url.PathEscape(id) + "/retry"
	}
	return d.Messages, a.c.do(ctx, "POST", path, &d)
}

func (a onlineAPI) remove(ctx context.Context, id string) error {
	return a.c.do(ctx, "DELETE", "/queue/"+url.PathEscape(id), &struct{}{})
}

func (a onlineAPI) dead(ctx context.Context) (items []queue.Item, err error) {
	return items, a.c.do(ctx, "GET", "/dead", &items)
}

func (a onlineAPI) requeue(ctx context.Context, id string) error {
	return a.c.do(ctx, "POST", "/dead/"+url.PathEscape(id)+"/requeue", &struct{}{})
}

func (a onlineAPI) flush(ctx context.Context, wait string) (r admin.FlushResult, err error) {
	return r, a.c.do(ctx, "POST", "/queue/flush?wait="+url.QueryEscape(wait), &r)
}

func (onlineAPI) close() error { return nil }

// rawLister copies a list's JSON straight from the relay to w.
type rawLister interface {
	listJSON(ctx context.Context, sub string, w io.Writer) error
}

func (a onlineAPI) listJSON(ctx context.Context, sub string, w io.Writer) error {
	path := "/queue"
	if sub == "dead" {
		path = "/dead"
	}
	return a.c.stream(ctx, path, w)
}

// offlineAPI works on the spool itself, holding its lock.
type offlineAPI struct{ q *queue.Queue }

// list: an offline queue is read whole when it opens, nothing is loading.
func (a offlineAPI) list(context.Context) ([]queue.Item, int, error) { return a.q.List(), 0, nil }

func (a offlineAPI) show(_ context.Context, id string) (queue.Item, bool, error) {
	it, err := a.q.Get(id)
	if err == nil {
		return it, false, nil
	}
	if it, err2 := a.q.GetDead(id); err2 == nil {
		return it, true, nil
	}
	return it, false, err
}

func (a offlineAPI) retry(_ context.Context, id string) (int, error) {
	if id != "" {
		return 1, a.q.Retry(id)
	}
	// Offline, each retry is saved, so that the next start honours it.
	n := 0
	for _, it := range a.q.List() {
		if err := a.q.Retry(it.ID); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (a offlineAPI) remove(_ context.Context, id string) error  { return a.q.Delete(id) }
func (a offlineAPI) dead(context.Context) ([]queue.Item, error) { return a.q.Dead() }
func (a offlineAPI) requeue(_ context.Context, id string) error { return a.q.Requeue(id) }
func (offlineAPI) flush(context.Context, string) (admin.FlushResult, error) {
	return admin.FlushResult{}, errors.New("flush delivers mail, so it needs a running relay (tlsrelay serve); " +
		"none answers on this spool")
}
func (a offlineAPI) close() error { return a.q.Close() }

// openQueueAPI reaches the relay that runs on dir, or the spool itself.
func openQueueAPI(ctx context.Context, dir string) (queueAPI, error) {
	c := newControlClient(dir)
	err := c.stream(ctx, "/healthz", io.Discard) // is a relay there? (cheap, unlike a whole list)
	if err == nil {
		return onlineAPI{c}, nil
	}
	if !errors.Is(err, errNoServer) {
		return nil, err
	}
	q, err := offlineQueue(dir, func(string, string) []string { return nil })
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	return offlineAPI{q}, nil
}
