package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/loadgen"
)

// cmdBench drives a relay with concurrent SMTP sessions, one message per
// session (like Postfix's smtp-source), and reports msg/s and the
// end-of-DATA -> 250 latency percentiles. It stops after -n messages, at the
// first -timeout, or on SIGINT.
func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", stderr)
	o := loadgen.Options{}
	fs.StringVar(&o.Server, "server", "127.0.0.1:2525", "relay address")
	fs.IntVar(&o.N, "n", 2000, "messages to send (one SMTP session each)")
	fs.IntVar(&o.C, "c", 20, "concurrent sessions")
	size := fs.String("size", "4k", "message size: bytes, or with k or m (KiB, MiB)")
	fs.StringVar(&o.From, "from", "bench@example.com", "envelope sender")
	fs.StringVar(&o.To, "to", "sink@example.net", "recipient")
	fs.StringVar(&o.Helo, "helo", "bench.localhost", "EHLO name")
	fs.DurationVar(&o.Timeout, "timeout", 10*time.Minute, "give up on the whole run after this long")
	fs.DurationVar(&o.IOTimeout, "io-timeout", time.Minute, "deadline for each read and write")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var err error
	if o.Size, err = loadgen.ParseSize(*size); err != nil || o.Size < 64 || o.Size > 1<<30 {
		fmt.Fprintf(stderr, "tlsrelay bench: -size %q: want 64 bytes to 1g, e.g. 4k or 10m\n", *size)
		return errUsage
	}
	if o.N < 1 || o.C < 1 || o.C > 10000 {
		fmt.Fprintln(stderr, "tlsrelay bench: -n must be at least 1 and -c 1 to 10000")
		return errUsage
	}
	res := loadgen.Run(ctx, o)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		res.Print(stdout)
	}
	if res.Failed > 0 {
		return fmt.Errorf("bench: %d of %d messages failed; first: %s", res.Failed, o.N, res.FirstErr)
	}
	return nil
}
