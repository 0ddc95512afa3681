package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/tlsrelay/tlsrelay/admin"
	"github.com/tlsrelay/tlsrelay/internal/textesc"
)

// listCmd is `queue list` and `queue dead`: page by page from the relay (or
// the spool), each page printed as it arrives, so that a queue of 100,000
// messages lists in bounded memory. With -json the output is one JSON array.
func listCmd(ctx context.Context, api admin.API, dead, asJSON bool, out io.Writer) error {
	w := bufio.NewWriter(out)
	defer w.Flush()
	n, loading := 0, 0
	if asJSON {
		w.WriteString("[")
	}
	err := admin.Each(ctx, api, dead, admin.MaxPageSize, func(p admin.Page) error {
		loading = p.Loading
		if !asJSON {
			admin.PrintItems(w, p.Items, time.Now())
			n += len(p.Items)
			return nil
		}
		for i := range p.Items {
			b, err := json.MarshalIndent(&p.Items[i], "  ", "  ")
			if err != nil {
				return err
			}
			if n > 0 {
				w.WriteString(",")
			}
			w.WriteString("\n  ")
			w.Write(textesc.EscapeJSON(b))
			n++
		}
		return nil
	})
	if err != nil {
		return err
	}
	if asJSON {
		if n > 0 {
			w.WriteString("\n")
		}
		w.WriteString("]\n")
		return nil
	}
	if n == 0 {
		fmt.Fprintln(w, "(empty)")
	} else {
		fmt.Fprintln(w, admin.Plural(n, "message"))
	}
	if loading > 0 {
		fmt.Fprintf(w, "(and %s the relay has found in its spool since it started and not read yet)\n",
			admin.Plural(loading, "more message"))
	}
	return nil
}
