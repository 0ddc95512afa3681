package admin_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/admin"
)

// Both ends of the control socket: what Client asks is what Handler routes,
// for every call, against a real spool.
func TestClientOverSocket(t *testing.T) {
	dir := t.TempDir()
	q, err := admin.OpenSpool(dir, func(string, string) []string { return []string{"p"} })
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := q.Enqueue(ctx, "127.0.0.1", "app@example.com", []string{"a@example.net"}, strings.NewReader("Subject: x\r\n\r\nhi\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := admin.NewClient(dir)
	if err := c.Ping(ctx); !errors.Is(err, admin.ErrNoServer) {
		t.Fatalf("Ping with no server: %v, want ErrNoServer", err)
	}
	notReady := errors.New("warming up")
	stop, err := admin.ServeSocket(dir, admin.Handler(admin.Options{Queue: q, Ready: func() error { return notReady }}))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if ok, text, err := c.Ready(ctx); err != nil || ok || text != "not ready: warming up" {
		t.Fatalf("Ready: %v %q %v; want false, the reason, nil", ok, text, err)
	}
	items, loading, err := c.List(ctx)
	if err != nil || len(items) != 1 || items[0].ID != id || loading != 0 {
		t.Fatalf("List: %+v %d %v; want the one message", items, loading, err)
	}
	if it, dead, err := c.Show(ctx, id); err != nil || dead || it.ID != id {
		t.Fatalf("Show: %+v %v %v", it, dead, err)
	}
	if _, _, err := c.Show(ctx, "no-such-id"); err == nil {
		t.Fatal("Show of an unknown ID: no error")
	}
	if n, err := c.Retry(ctx, id); err != nil || n != 1 {
		t.Fatalf("Retry(id): %d %v", n, err)
	}
	if n, err := c.Retry(ctx, ""); err != nil || n != 1 {
		t.Fatalf("Retry(all): %d %v", n, err)
	}
	var raw strings.Builder
	if err := c.CopyList(ctx, false, &raw); err != nil || !strings.Contains(raw.String(), id) {
		t.Fatalf("CopyList: %v %q", err, raw.String())
	}
	if d, err := c.Dead(ctx); err != nil || len(d) != 0 {
		t.Fatalf("Dead: %+v %v", d, err)
	}
	if err := c.Requeue(ctx, "no-such-id"); err == nil {
		t.Fatal("Requeue of an unknown ID: no error")
	}
	if err := c.Delete(ctx, id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if items, _, err := c.List(ctx); err != nil || len(items) != 0 {
		t.Fatalf("List after Delete: %+v %v", items, err)
	}
	if r, err := c.Flush(ctx, "1s"); err != nil {
		t.Fatalf("Flush of an empty queue: %+v %v", r, err)
	}
	req, _ := http.NewRequestWithContext(ctx, "PUT", "http://tlsrelay"+admin.PathQueue, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("PUT %s: %s, want 405", admin.PathQueue, resp.Status)
	}
}
