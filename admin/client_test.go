package admin_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
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
	stop, err := admin.ServeSocket(dir, admin.Handler(admin.Options{Queue: q, Ready: func() error { return notReady }}), admin.Limits{})
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
	p, err := c.Page(ctx, false, "", 0)
	if err != nil || len(p.Items) != 1 || p.Items[0].ID != id || p.Loading != 0 || p.Next != "" {
		t.Fatalf("Page: %+v %v; want the one message, the last page", p, err)
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
	if d, err := c.Page(ctx, true, "", 0); err != nil || len(d.Items) != 0 {
		t.Fatalf("Page(dead): %+v %v", d, err)
	}
	if err := c.Requeue(ctx, "no-such-id"); err == nil {
		t.Fatal("Requeue of an unknown ID: no error")
	}
	if err := c.Delete(ctx, id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if p, err := c.Page(ctx, false, "", 0); err != nil || len(p.Items) != 0 {
		t.Fatalf("Page after Delete: %+v %v", p, err)
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

// The control socket appears with its final mode, owner-only, and leaves
// no private directory behind; a flush may not wait past MaxFlushWait.
func TestControlSocketModeAndFlushCap(t *testing.T) {
	dir := t.TempDir()
	q, err := admin.OpenSpool(dir, func(string, string) []string { return []string{"p"} })
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	stop, err := admin.ServeSocket(dir, admin.Handler(admin.Options{Queue: q}), admin.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	st, err := os.Lstat(admin.SocketPath(dir))
	if err != nil || st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Fatalf("control socket: %v %v, want a socket with mode 0600", st.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".cs*")); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := admin.NewClient(dir)
	if _, err := c.Flush(ctx, (admin.MaxFlushWait + time.Second).String()); err == nil || !strings.Contains(err.Error(), "wait: want a duration from 0s to 5m0s") {
		t.Fatalf("flush past the cap: %v", err)
	}
	stop()
	if _, err := os.Lstat(admin.SocketPath(dir)); !os.IsNotExist(err) {
		t.Fatalf("socket still there after stop: %v", err)
	}
}
