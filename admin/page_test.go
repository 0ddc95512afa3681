package admin_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/admin"
)

// A listing walked page by page, online and offline, gives every message
// once, in ID order; a bad limit is refused.
func TestPages(t *testing.T) {
	dir := t.TempDir()
	q, err := admin.OpenSpool(dir, func(string, string) []string { return []string{"p"} })
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	want := map[string]bool{}
	for i := range 25 {
		id, err := q.Enqueue(ctx, "127.0.0.1", "app@example.com", []string{fmt.Sprintf("r%d@example.net", i)}, strings.NewReader("Subject: x\r\n\r\nhi\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		want[id] = true
	}
	stop, err := admin.ServeSocket(dir, admin.Handler(admin.Options{Queue: q}), admin.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for name, api := range map[string]admin.API{"socket": admin.NewClient(dir), "offline": admin.Offline{Q: q}} {
		pages, last := 0, ""
		seen := map[string]bool{}
		err := admin.Each(ctx, api, false, 10, func(p admin.Page) error {
			pages++
			for _, it := range p.Items {
				if it.ID <= last || seen[it.ID] || !want[it.ID] {
					return fmt.Errorf("item %s out of order, repeated or unknown (after %s)", it.ID, last)
				}
				seen[it.ID], last = true, it.ID
			}
			return nil
		})
		if err != nil || pages != 3 || len(seen) != 25 {
			t.Errorf("%s: %d pages, %d items, %v; want 3 pages of all 25", name, pages, len(seen), err)
		}
	}
	if _, err := admin.NewClient(dir).Page(ctx, false, "", admin.MaxPageSize+1); err == nil || !strings.Contains(err.Error(), "limit: want a whole number from 1 to") {
		t.Errorf("limit over the maximum: %v, want the 400's reason", err)
	}
}
