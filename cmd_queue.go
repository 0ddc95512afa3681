package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/tlsrelay/tlsrelay/admin"
	"github.com/tlsrelay/tlsrelay/internal/textesc"
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
		return listCmd(ctx, api, sub == "dead", f.json, w)
	case "show":
		it, dead, err := api.Show(ctx, f.id)
		if err != nil {
			return err
		}
		return output(w, f.json, it, func() { admin.PrintItem(w, it, dead, time.Now()) })
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
			fmt.Fprintf(w, "%s: %s\n", sub, admin.Plural(n, "message"))
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
		fmt.Fprintf(w, "flush: %s retried, %d still queued\n", admin.Plural(res.Retried, "message"), res.Remaining)
	}); err != nil {
		return err
	}
	if f.wait && res.Remaining > 0 {
		return fmt.Errorf("%s still queued after %s", admin.Plural(res.Remaining, "message"), f.timeout)
	}
	return nil
}

// output prints v as JSON, or calls human.
func output(w io.Writer, asJSON bool, v any, human func()) error {
	if !asJSON {
		human()
		return nil
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(textesc.EscapeJSON(b), '\n'))
	return err
}
