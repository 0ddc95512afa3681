// Package admin is the relay's operator API over HTTP: health, metrics and
// the queue commands (list, show, retry, delete, dead letters, requeue,
// flush) as JSON. It owns both ends: Handler and ServeSocket serve it (the
// daemon on a Unix socket in the spool directory, so that `tlsrelay queue`
// works while `serve` runs, with the spool's file permissions as the access
// control), and Client and Open call it.
package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/textesc"
	"github.com/tlsrelay/tlsrelay/queue"
)

// Queue is what the API needs of *queue.Queue.
type Queue interface {
	Page(after string, limit int) (items []queue.Item, more bool)
	Get(id string) (queue.Item, error)
	Retry(id string) error
	RetryAll() int
	Delete(id string) error
	DeadPage(after string, limit int) (items []queue.Item, more bool, err error)
	GetDead(id string) (queue.Item, error)
	Requeue(id string) error
	WaitFor(ctx context.Context, cond func([]queue.Item) bool) error
	Stats() queue.Stats
}

// LoadingHeader, on the answer to GET /queue, counts the messages a relay
// just started has found in its spool and not read yet: the list does not
// show them yet (queue.Options.LoadInBackground).
const LoadingHeader = "Tlsrelay-Loading"

var _ Queue = (*queue.Queue)(nil)

// MaxFlushWait bounds how long one flush request may wait: a connection
// held longer than that is a connection an attacker could pile up.
const MaxFlushWait = 5 * time.Minute

// Options configure the admin HTTP handler.
type Options struct {
	Queue   Queue        // the queue API; required
	Metrics *Metrics     // nil = no /metrics
	Ready   func() error // nil = always ready once serving
}

// Handler returns the admin API:
//
//	GET    /healthz             200 while the process runs
//	GET    /readyz              200 if Ready returns nil, else 503 with the reason
//	GET    /metrics             Prometheus text format (if Metrics is set)
//
//	GET    /queue               the queued messages, a page (?limit=N&after=ID; page.go)
//	GET    /queue/{id}          one message with its history
//	POST   /queue/{id}/retry    make it due now
//	POST   /queue/retry         make every message due now
//	DELETE /queue/{id}          delete it (no delivery, no bounce)
//	GET    /dead                the dead letters, a page
//	GET    /dead/{id}           one dead letter
//	POST   /dead/{id}/requeue   move it back into the queue
//	POST   /queue/flush?wait=D  retry all, then wait up to D until the queue is empty
//
// Errors are {"error": "..."} with 404 (unknown ID), 409 (in delivery) or 500.
func Handler(o Options) http.Handler {
	q := o.Queue
	mux := http.NewServeMux()
	monitorRoutes(mux, o)
	mux.HandleFunc("GET "+PathQueue, func(w http.ResponseWriter, r *http.Request) {
		after, limit, ok := pageParams(w, r)
		if !ok {
			return
		}
		if n := q.Stats().Loading; n > 0 {
			w.Header().Set(LoadingHeader, strconv.Itoa(n))
		}
		items, more := q.Page(after, limit)
		servePage(w, items, more)
	})
	mux.HandleFunc("GET "+PathQueue+idPattern, func(w http.ResponseWriter, r *http.Request) {
		it, err := q.Get(r.PathValue("id"))
		reply(w, it, err)
	})
	mux.HandleFunc("POST "+PathQueue+idPattern+suffixRetry, func(w http.ResponseWriter, r *http.Request) {
		reply(w, done{"retry", 1}, q.Retry(r.PathValue("id")))
	})
	mux.HandleFunc("POST "+PathRetryAll, func(w http.ResponseWriter, r *http.Request) {
		reply(w, done{"retry", q.RetryAll()}, nil)
	})
	mux.HandleFunc("DELETE "+PathQueue+idPattern, func(w http.ResponseWriter, r *http.Request) {
		reply(w, done{"delete", 1}, q.Delete(r.PathValue("id")))
	})
	mux.HandleFunc("GET "+PathDead, func(w http.ResponseWriter, r *http.Request) {
		after, limit, ok := pageParams(w, r)
		if !ok {
			return
		}
		items, more, err := q.DeadPage(after, limit)
		if err != nil {
			reply(w, nil, err)
			return
		}
		servePage(w, items, more)
	})
	mux.HandleFunc("GET "+PathDead+idPattern, func(w http.ResponseWriter, r *http.Request) {
		it, err := q.GetDead(r.PathValue("id"))
		reply(w, it, err)
	})
	mux.HandleFunc("POST "+PathDead+idPattern+suffixRequeue, func(w http.ResponseWriter, r *http.Request) {
		reply(w, done{"requeue", 1}, q.Requeue(r.PathValue("id")))
	})
	mux.HandleFunc("POST "+PathFlush, func(w http.ResponseWriter, r *http.Request) { flush(w, r, q) })
	return mux
}

// ready answers /readyz.
func ready(w http.ResponseWriter, check func() error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if check != nil {
		if err := check(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "not ready: "+err.Error()+"\n")
			return
		}
	}
	io.WriteString(w, "ready\n")
}

// done reports what a command did.
type done struct {
	Op       string `json:"op"`
	Messages int    `json:"messages"`
}

// FlushResult is the answer to a flush.
type FlushResult struct {
	Retried   int  `json:"retried"`
	Remaining int  `json:"remaining"` // messages still queued when the answer was given
	TimedOut  bool `json:"timed_out"`
}

func flush(w http.ResponseWriter, r *http.Request, q Queue) {
	var wait time.Duration
	if s := r.URL.Query().Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > MaxFlushWait {
			writeJSON(w, http.StatusBadRequest, errorBody{"wait: want a duration from 0s to " + MaxFlushWait.String()})
			return
		}
		wait = d
	}
	res := FlushResult{Retried: q.RetryAll()}
	if wait > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		err := q.WaitFor(ctx, func(items []queue.Item) bool { return len(items) == 0 })
		cancel()
		res.TimedOut = err != nil
	}
	res.Remaining = q.Stats().Items
	reply(w, res, nil)
}

type errorBody struct {
	Error string `json:"error"`
}

func reply(w http.ResponseWriter, v any, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, v)
	case errors.Is(err, queue.ErrNotFound):
		writeJSON(w, http.StatusNotFound, errorBody{err.Error()})
	case errors.Is(err, queue.ErrBusy):
		writeJSON(w, http.StatusConflict, errorBody{err.Error()})
	default:
		writeJSON(w, http.StatusInternalServerError, errorBody{err.Error()})
	}
}

// writeItems streams a list of items as a JSON array, one item at a time,
// so that a queue of 100,000 messages is not built as one buffer.
func writeItems(w http.ResponseWriter, items []queue.Item) {
	w.Header().Set("Content-Type", "application/json")
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString("[")
	for i := range items {
		if i > 0 {
			bw.WriteString(",")
		}
		b, err := json.Marshal(&items[i])
		if err != nil {
			return // the client sees a truncated array: invalid JSON, never a wrong one
		}
		bw.Write(textesc.EscapeJSON(b))
		bw.WriteString("\n")
	}
	bw.WriteString("]\n")
	bw.Flush()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error": "encode: `+strconv.Quote(err.Error())+`"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(textesc.EscapeJSON(b), '\n'))
}
