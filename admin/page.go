package admin

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/tlsrelay/tlsrelay/queue"
)

// Listings come in pages, so that neither end holds a queue of 100,000
// messages at once: GET /queue?limit=N&after=ID answers the items with IDs
// after ID, in ID order, at most N (default DefaultPageSize, at most
// MaxPageSize); when more follow, NextHeader holds the cursor for the next
// page.
const (
	DefaultPageSize = 1000
	MaxPageSize     = 10000

	// NextHeader, on a page that is not the last, is the after= of the next.
	NextHeader = "Tlsrelay-Next"
)

// Page is one page of a listing.
type Page struct {
	Items   []queue.Item
	Next    string // after= of the next page; "" on the last
	Loading int    // messages a relay just started has not read yet (LoadingHeader)
}

// pageParams reads limit and after; a bad value is a 400 with the fix.
func pageParams(w http.ResponseWriter, r *http.Request) (after string, limit int, ok bool) {
	q := r.URL.Query()
	limit = DefaultPageSize
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageSize {
			writeJSON(w, http.StatusBadRequest, errorBody{"limit: want a whole number from 1 to " + strconv.Itoa(MaxPageSize)})
			return "", 0, false
		}
		limit = n
	}
	return q.Get("after"), limit, true
}

// servePage answers a page of items.
func servePage(w http.ResponseWriter, items []queue.Item, more bool) {
	if more && len(items) > 0 {
		w.Header().Set(NextHeader, items[len(items)-1].ID)
	}
	writeItems(w, items)
}

func pageQuery(path, after string, limit int) string {
	v := url.Values{}
	if after != "" {
		v.Set("after", after)
	}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}

// Page asks for one page of the queue (or of the dead letters); limit 0 =
// the relay's default page size.
func (c *Client) Page(ctx context.Context, dead bool, after string, limit int) (p Page, err error) {
	path := PathQueue
	if dead {
		path = PathDead
	}
	h, err := c.call(ctx, "GET", pageQuery(path, after, limit), &p.Items)
	if err != nil {
		return Page{}, err
	}
	p.Next = h.Get(NextHeader)
	p.Loading, _ = strconv.Atoi(h.Get(LoadingHeader))
	return p, nil
}

// Page is one page of the spool read directly.
func (a Offline) Page(_ context.Context, dead bool, after string, limit int) (Page, error) {
	if limit <= 0 {
		limit = DefaultPageSize
	}
	var p Page
	var more bool
	var err error
	if dead {
		p.Items, more, err = a.Q.DeadPage(after, limit)
	} else {
		p.Items, more = a.Q.Page(after, limit)
	}
	if more && len(p.Items) > 0 {
		p.Next = p.Items[len(p.Items)-1].ID
	}
	return p, err
}

// Each calls f with each page of a listing, in order, until the last page
// or an error (f's or the API's).
func Each(ctx context.Context, api API, dead bool, limit int, f func(Page) error) error {
	after := ""
	for {
		p, err := api.Page(ctx, dead, after, limit)
		if err != nil {
			return err
		}
		if err := f(p); err != nil {
			return err
		}
		if p.Next == "" || p.Next <= after { // a cursor that does not advance would loop forever
			return nil
		}
		after = p.Next
	}
}
