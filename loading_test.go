package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tlsrelay/tlsrelay/admin"
	"github.com/tlsrelay/tlsrelay/queue"
)

// loadingQueue is a queue that says 3 messages are still being read.
type loadingQueue struct{ *queue.Queue }

func (loadingQueue) Stats() queue.Stats { return queue.Stats{Loading: 3} }

// loadingAPI is an offline API whose list says 3 more are being read.
type loadingAPI struct{ admin.Offline }

func (a loadingAPI) Page(ctx context.Context, dead bool, after string, limit int) (admin.Page, error) {
	p, err := a.Offline.Page(ctx, dead, after, limit)
	p.Loading = 3
	return p, err
}

// While a restarted relay still reads its spool, GET /queue says how many
// messages it has not read yet, and `queue list` tells the operator.
func TestQueueListWhileLoading(t *testing.T) {
	q, err := admin.OpenSpool(t.TempDir(), func(string, string) []string { return []string{"p"} })
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	rec := httptest.NewRecorder()
	admin.Handler(admin.Options{Queue: loadingQueue{q}}).ServeHTTP(rec, httptest.NewRequest("GET", "/queue", nil))
	if got := rec.Header().Get(admin.LoadingHeader); rec.Code != 200 || got != "3" {
		t.Fatalf("GET /queue: %d, %s %q; want 200 and 3", rec.Code, admin.LoadingHeader, got)
	}
	sock := t.TempDir()
	stop, err := admin.ServeSocket(sock, admin.Handler(admin.Options{Queue: loadingQueue{q}}), admin.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if p, err := admin.NewClient(sock).Page(context.Background(), false, "", 0); err != nil || p.Loading != 3 {
		t.Fatalf("list over the control socket: %d loading, %v; want 3", p.Loading, err)
	}
	var out bytes.Buffer
	if err := runQueueCmd(context.Background(), loadingAPI{admin.Offline{Q: q}}, "list", &queueFlags{}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "and 3 more messages the relay has found in its spool") {
		t.Fatalf("queue list printed:\n%s", out.String())
	}
}
