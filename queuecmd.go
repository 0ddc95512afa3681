package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tlsrelay/tlsrelay/admin"
	"github.com/tlsrelay/tlsrelay/policy"
	"github.com/tlsrelay/tlsrelay/queue"
)

const queueUsage = `Usage: tlsrelay queue COMMAND [-config relay.yaml | -dir SPOOL] [-json] [ID]

  list              the queued messages and each recipient's state
  show ID           one message (queued or dead) with its history
  retry ID          try it now;  retry -all: every queued message
  delete ID         delete a queued message (not delivered, no bounce)
  dead              the dead letters
  requeue ID        move a dead letter back into the queue
  flush [-wait] [-timeout D]   retry all now; with -wait, wait until the queue is empty

With serve running, commands go through its control socket (SPOOL/control.sock);
otherwise they work on the spool directly (flush needs a running relay).
`

// queueFlags are the flags of every queue subcommand.
type queueFlags struct {
	config, dir string
	json, all   bool
	wait        bool
	timeout     time.Duration
	id          string
}

func parseQueueFlags(sub string, args []string, stderr io.Writer) (*queueFlags, error) {
	f := &queueFlags{}
	fs := newFlagSet("queue "+sub, stderr)
	fs.StringVar(&f.config, "config", "relay.yaml", "config file (for queue.dir)")
	fs.StringVar(&f.dir, "dir", "", "spool directory (instead of -config)")
	fs.BoolVar(&f.json, "json", false, "print JSON")
	if sub == "retry" {
		fs.BoolVar(&f.all, "all", false, "retry every queued message")
	}
	if sub == "flush" {
		fs.BoolVar(&f.wait, "wait", false, "wait until the queue is empty")
		fs.DurationVar(&f.timeout, "timeout", 60*time.Second, "with -wait: give up after this long (exit 1)")
	}
	if err := fs.Parse(args); err != nil {
		return nil, errUsage
	}
	needID := sub == "show" || sub == "delete" || sub == "requeue" || (sub == "retry" && !f.all)
	switch {
	case needID && fs.NArg() != 1:
		fmt.Fprintf(stderr, "tlsrelay queue %s: want one message ID\n\n%s", sub, queueUsage)
		return nil, errUsage
	case !needID && fs.NArg() != 0:
		fmt.Fprintf(stderr, "tlsrelay queue %s: unexpected argument %q\n", sub, fs.Arg(0))
		return nil, errUsage
	}
	f.id = fs.Arg(0)
	return f, nil
}

// spoolDir is -dir, or queue.dir of the config.
func (f *queueFlags) spoolDir() (string, error) {
	if f.dir != "" {
		return f.dir, nil
	}
	cfg, err := policy.Load(f.config, os.LookupEnv)
	if err != nil {
		return "", fmt.Errorf("%s is not valid (or use -dir SPOOL):\n%w", f.config, err)
	}
	return cfg.Queue.Dir, nil
}

func cmdQueue(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, queueUsage)
		return errUsage
	}
	sub := args[0]
	switch sub {
	case "list", "show", "retry", "delete", "dead", "requeue", "flush":
	default:
		fmt.Fprintf(stderr, "tlsrelay queue: unknown command %q\n\n%s", sub, queueUsage)
		return errUsage
	}
	f, err := parseQueueFlags(sub, args[1:], stderr)
	if err != nil {
		return err
	}
	dir, err := f.spoolDir()
	if err != nil {
		return err
	}
	api, err := admin.Open(ctx, dir)
	if err != nil {
		return err
	}
	defer api.Close()
	return runQueueCmd(ctx, api, sub, f, stdout)
}

func runQueueCmd(ctx context.Context, api admin.API, sub string, f *queueFlags, w io.Writer) error {
	switch sub {
	case "list", "dead":
		if c, ok := api.(*admin.Client); ok && f.json {
			return c.CopyList(ctx, sub == "dead", w) // the relay's JSON as it is: no decode and re-encode
		}
		var items []queue.Item
		var loading int
		var err error
		if sub == "dead" {
			items, err = api.Dead(ctx)
		} else {
			items, loading, err = api.List(ctx)
		}
		if err != nil {
			return err
		}
		return output(w, f.json, items, func() {
			printItems(w, items, time.Now())
			if loading > 0 {
				fmt.Fprintf(w, "(and %s the relay has found in its spool since it started and not read yet)\n",
					plural(loading, "more message"))
			}
		})
	case "show":
		it, dead, err := api.Show(ctx, f.id)
		if err != nil {
			return err
		}
		return output(w, f.json, it, func() { printItem(w, it, dead, time.Now()) })
	case "flush":
		return flushCmd(ctx, api, f, w)
	}
	return changeCmd(ctx, api, sub, f, w)
}

// changeCmd runs the commands that change one message (or all, for retry).
func changeCmd(ctx context.Context, api admin.API, sub string, f *queueFlags, w io.Writer) error {
	n, err := 1, error(nil)
	switch sub {
	case "retry":
		n, err = api.Retry(ctx, f.id)
	case "delete":
		err = api.Delete(ctx, f.id)
	case "requeue":
		err = api.Requeue(ctx, f.id)
	}
	if err != nil {
		return err
	}
	res := struct {
		Op       string `json:"op"`
		ID       string `json:"id,omitempty"`
		Messages int    `json:"messages"`
	}{sub, f.id, n}
	return output(w, f.json, res, func() {
		if f.id != "" {
			fmt.Fprintf(w, "%s: %s done\n", f.id, sub)
		} else {
			fmt.Fprintf(w, "%s: %s\n", sub, plural(n, "message"))
		}
	})
}

func flushCmd(ctx context.Context, api admin.API, f *queueFlags, w io.Writer) error {
	wait := "0s"
	if f.wait {
		wait = f.timeout.String()
	}
	res, err := api.Flush(ctx, wait)
	if err != nil {
		return err
	}
	if err := output(w, f.json, res, func() {
		fmt.Fprintf(w, "flush: %s retried, %d still queued\n", plural(res.Retried, "message"), res.Remaining)
	}); err != nil {
		return err
	}
	if f.wait && res.Remaining > 0 {
		return fmt.Errorf("%s still queued after %s", plural(res.Remaining, "message"), f.timeout)
	}
	return nil
}

// output prints v as JSON, or calls human.
func output(w io.Writer, asJSON bool, v any, human func()) error {
	if !asJSON {
		human()
		return nil
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printItems is the table of `queue list` and `queue dead`: a line per
// message, then a line per recipient with its state.
func printItems(w io.Writer, items []queue.Item, now time.Time) {
	if len(items) == 0 {
		fmt.Fprintln(w, "(empty)")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, it := range items {
		// A line without tabs ends a column block: each message's
		// recipients align among themselves.
		fmt.Fprintf(tw, "%s  %s old  %d bytes  from <%s>\n", it.ID, age(now.Sub(it.Arrived)), it.Size, it.From)
		for _, r := range it.Rcpts {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", r.Addr, r.Status, rcptWhere(r),
				tries(r.Attempts), rcptNext(r, now), r.LastError)
		}
	}
	tw.Flush()
	fmt.Fprintln(w, plural(len(items), "message"))
}

// rcptWhere names the provider a recipient went to or is waiting for.
func rcptWhere(r queue.Rcpt) string {
	if r.Status == queue.Delivered {
		return "via " + r.Provider
	}
	at := "at " + r.Route[r.Index]
	if len(r.Route) > 1 {
		at += fmt.Sprintf(" (%d of %s)", r.Index+1, strings.Join(r.Route, ","))
	}
	return at
}

func tries(n int) string {
	if n == 1 {
		return "1 try"
	}
	return fmt.Sprintf("%d tries", n)
}

func plural(n int, noun string) string {
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

// printItem is `queue show`.
func printItem(w io.Writer, it queue.Item, dead bool, now time.Time) {
	where := "queued"
	if dead {
		where = "dead letter"
	}
	fmt.Fprintf(w, "ID:       %s (%s)\nFrom:     <%s>\nClient:   %s\nArrived:  %s (%s ago)\nSize:     %d bytes\n",
		it.ID, where, it.From, it.Client, it.Arrived.Format(time.RFC3339), age(now.Sub(it.Arrived)), it.Size)
	fmt.Fprintln(w, "Recipients:")
	for _, r := range it.Rcpts {
		fmt.Fprintf(w, "  %s  %s  %s  %s  %s\n", r.Addr, r.Status, rcptWhere(r), tries(r.Attempts), rcptNext(r, now))
		if r.LastError != "" {
			fmt.Fprintf(w, "      last error: %s\n", r.LastError)
		}
		if r.Reply != "" {
			fmt.Fprintf(w, "      reply: %s\n", r.Reply)
		}
	}
	if len(it.History) > 0 {
		fmt.Fprintln(w, "History:")
		for _, ev := range it.History {
			fmt.Fprintf(w, "  %s  %s  %s  %s  %s\n", ev.Time.Format(time.RFC3339), ev.Rcpt, ev.Provider, ev.Status, ev.Text)
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
