package admin

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/textesc"
	"github.com/tlsrelay/tlsrelay/queue"
)

// This file renders queue items for an operator's terminal: the text of
// `tlsrelay queue list`, `queue dead` and `queue show`.

// PrintItems is the table of `queue list` and `queue dead`, one page of
// it: a line per message, then a line per recipient with its state. Text
// from strangers (addresses, replies) is escaped (internal/textesc).
func PrintItems(w io.Writer, items []queue.Item, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, it := range items {
		// A line without tabs ends a column block: each message's
		// recipients align among themselves.
		fmt.Fprintf(tw, "%s  %s old  %d bytes  from <%s>\n", textesc.Escape(it.ID), age(now.Sub(it.Arrived)), it.Size, textesc.Escape(it.From))
		for _, r := range it.Rcpts {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", textesc.Escape(r.Addr), r.Status, rcptWhere(r),
				tries(r.Attempts), rcptNext(r, now), textesc.Escape(r.LastError))
		}
	}
	tw.Flush()
}

// rcptWhere names the provider a recipient went to or is waiting for.
func rcptWhere(r queue.Rcpt) string {
	if r.Status == queue.Delivered {
		return "via " + textesc.Escape(r.Provider)
	}
	if r.Index < 0 || r.Index >= len(r.Route) { // a spool file edited by hand
		return "at ?"
	}
	at := "at " + textesc.Escape(r.Route[r.Index])
	if len(r.Route) > 1 {
		at += fmt.Sprintf(" (%d of %s)", r.Index+1, textesc.Escape(strings.Join(r.Route, ",")))
	}
	return at
}

func tries(n int) string {
	if n == 1 {
		return "1 try"
	}
	return fmt.Sprintf("%d tries", n)
}

// Plural is "1 noun" or "n nouns".
func Plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func rcptNext(r queue.Rcpt, now time.Time) string {
	if r.Status.Final() {
		return ""
	}
	return "next " + when(r.NextAttempt, now)
}

// PrintItem is `queue show`.
func PrintItem(w io.Writer, it queue.Item, dead bool, now time.Time) {
	where := "queued"
	if dead {
		where = "dead letter"
	}
	fmt.Fprintf(w, "ID:       %s (%s)\nFrom:     <%s>\nClient:   %s\nArrived:  %s (%s ago)\nSize:     %d bytes\n",
		textesc.Escape(it.ID), where, textesc.Escape(it.From), textesc.Escape(it.Client), it.Arrived.Format(time.RFC3339), age(now.Sub(it.Arrived)), it.Size)
	fmt.Fprintln(w, "Recipients:")
	for _, r := range it.Rcpts {
		fmt.Fprintf(w, "  %s  %s  %s  %s  %s\n", textesc.Escape(r.Addr), r.Status, rcptWhere(r), tries(r.Attempts), rcptNext(r, now))
		if r.LastError != "" {
			fmt.Fprintf(w, "      last error: %s\n", textesc.Escape(r.LastError))
		}
		if r.Reply != "" {
			fmt.Fprintf(w, "      reply: %s\n", textesc.Escape(r.Reply))
		}
	}
	if len(it.History) > 0 {
		fmt.Fprintln(w, "History:")
		for _, ev := range it.History {
			fmt.Fprintf(w, "  %s  %s  %s  %s  %s\n", ev.Time.Format(time.RFC3339), textesc.Escape(ev.Rcpt), textesc.Escape(ev.Provider), ev.Status, textesc.Escape(ev.Text))
		}
	}
}

func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return d.Truncate(time.Second).String()
	case d < time.Hour:
		return d.Truncate(time.Minute).String()
	}
	return d.Truncate(time.Hour).String()
}

func when(t, now time.Time) string {
	if !t.After(now) {
		return "now"
	}
	return "in " + age(t.Sub(now))
}
