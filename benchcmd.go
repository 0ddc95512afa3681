package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// benchOptions describe one load run against a relay.
type benchOptions struct {
	server, from, to, helo string
	n, c                   int
	size                   int64
	timeout                time.Duration // the whole run
	ioTimeout              time.Duration // each read and write
}

// benchResult is what a load run measured.
type benchResult struct {
	Server    string        `json:"server"`
	Messages  int           `json:"messages"`
	Sessions  int           `json:"sessions"`
	SizeBytes int64         `json:"size_bytes"`
	OK        int           `json:"ok"`
	Failed    int           `json:"failed"`
	FirstErr  string        `json:"first_error,omitempty"`
	Elapsed   time.Duration `json:"-"`
	ElapsedS  float64       `json:"elapsed_s"`
	MsgPerSec float64       `json:"msg_per_s"`
	// Latency: last byte of "<CRLF>.<CRLF>" written -> the 250 read, in ms.
	Latency struct {
		P50 float64 `json:"p50"`
		P90 float64 `json:"p90"`
		P99 float64 `json:"p99"`
		Max float64 `json:"max"`
	} `json:"ack_latency_ms"`
}

// cmdBench drives a relay with concurrent SMTP sessions, one message per
// session (like Postfix's smtp-source), and reports msg/s and the
// end-of-DATA -> 250 latency percentiles. It stops after -n messages, at the
// first -timeout, or on SIGINT.
func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", stderr)
	o := benchOptions{}
	fs.StringVar(&o.server, "server", "127.0.0.1:2525", "relay address")
	fs.IntVar(&o.n, "n", 2000, "messages to send (one SMTP session each)")
	fs.IntVar(&o.c, "c", 20, "concurrent sessions")
	size := fs.String("size", "4k", "message size: bytes, or with k or m (KiB, MiB)")
	fs.StringVar(&o.from, "from", "bench@example.com", "envelope sender")
	fs.StringVar(&o.to, "to", "sink@example.net", "recipient")
	fs.StringVar(&o.helo, "helo", "bench.localhost", "EHLO name")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up on the whole run after this long")
	fs.DurationVar(&o.ioTimeout, "io-timeout", time.Minute, "deadline for each read and write")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var err error
	if o.size, err = parseSize(*size); err != nil || o.size < 64 || o.size > 1<<30 {
		fmt.Fprintf(stderr, "tlsrelay bench: -size %q: want 64 bytes to 1g, e.g. 4k or 10m\n", *size)
		return errUsage
	}
	if o.n < 1 || o.c < 1 || o.c > 10000 {
		fmt.Fprintln(stderr, "tlsrelay bench: -n must be at least 1 and -c 1 to 10000")
		return errUsage
	}
	res := runBench(ctx, o)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		printBench(stdout, res)
	}
	if res.Failed > 0 {
		return fmt.Errorf("bench: %d of %d messages failed; first: %s", res.Failed, o.n, res.FirstErr)
	}
	return nil
}

func printBench(w io.Writer, r benchResult) {
	fmt.Fprintf(w, "server %s: %d messages of %d bytes over %d sessions at a time\n", r.Server, r.Messages, r.SizeBytes, r.Sessions)
	fmt.Fprintf(w, "ok %d, failed %d, %.3f s, %.1f msg/s\n", r.OK, r.Failed, r.ElapsedS, r.MsgPerSec)
	fmt.Fprintf(w, "end of DATA -> 250 (ms): p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n",
		r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max)
}

// parseSize reads "4096", "4k", "10m" (KiB and MiB).
func parseSize(s string) (int64, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "m"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(s, "g"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("bad size")
	}
	return n * mult, nil
}

// runBench sends o.n messages over o.c concurrent sessions.
func runBench(ctx context.Context, o benchOptions) benchResult {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	body := benchBody(o.size)
	var (
		next     atomic.Int64
		mu       sync.Mutex
		lat      = make([]time.Duration, 0, o.n)
		failed   int
		firstErr string
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range min(o.c, o.n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > int64(o.n) {
					return
				}
				d, err := benchOne(ctx, o, body, i)
				mu.Lock()
				if err != nil {
					if failed++; firstErr == "" {
						firstErr = err.Error()
					}
				} else {
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if miss := o.n - len(lat) - failed; miss > 0 { // never started: the run timed out
		failed += miss
		if firstErr == "" {
			firstErr = ctx.Err().Error()
		}
	}
	r := benchResult{Server: o.server, Messages: o.n, Sessions: o.c, SizeBytes: o.size, OK: len(lat),
		Failed: failed, FirstErr: firstErr, Elapsed: elapsed, ElapsedS: elapsed.Seconds()}
	if len(lat) > 0 {
		r.MsgPerSec = float64(len(lat)) / elapsed.Seconds()
		slices.Sort(lat)
		r.Latency.P50, r.Latency.P90, r.Latency.P99 = ms(pct(lat, 50)), ms(pct(lat, 90)), ms(pct(lat, 99))
		r.Latency.Max = ms(lat[len(lat)-1])
	}
	return r
}

// pct is the nearest-rank percentile of sorted durations.
func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100 // ceil(n*p/100), 1-based
	return sorted[max(i, 1)-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// benchBody is the message text after the headers that benchOne writes:
// lines of 76 characters and CRLF, none starting with a dot (no stuffing
// needed), filling size bytes with the headers.
func benchBody(size int64) []byte {
	const hdrRoom = 200
	n := max(size-hdrRoom, 2)
	b := make([]byte, 0, n)
	line := strings.Repeat("x", 76) + "\r\n"
	for int64(len(b)+len(line)) <= n-2 {
		b = append(b, line...)
	}
	for int64(len(b)) < n-2 {
		b = append(b, 'y')
	}
	return append(b, '\r', '\n')
}

// benchOne makes one SMTP session with one message and returns the time
// from the end of the data to the 250.
func benchOne(ctx context.Context, o benchOptions, body []byte, i int64) (time.Duration, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", o.server)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r := bufio.NewReader(conn)
	w := bufio.NewWriterSize(conn, 32<<10)
	deadline := func() { conn.SetDeadline(time.Now().Add(o.ioTimeout)) }
	expect := func(want string) error {
		deadline()
		for range 100 { // a reply of more than 100 lines is an error
			line, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if len(line) >= 4 && line[3] == '-' {
				continue
			}
			if !strings.HasPrefix(line, want) {
				return fmt.Errorf("reply %q, want %s", strings.TrimSpace(line), want)
			}
			return nil
		}
		return errors.New("reply longer than 100 lines")
	}
	cmd := func(line, want string) error {
		deadline()
		w.WriteString(line + "\r\n")
		if err := w.Flush(); err != nil {
			return err
		}
		if err := expect(want); err != nil {
			return fmt.Errorf("%s: %w", strings.Fields(line)[0], err)
		}
		return nil
	}
	if err := expect("220"); err != nil {
		return 0, fmt.Errorf("greeting: %w", err)
	}
	for _, c := range [][2]string{
		{"EHLO " + o.helo, "250"}, {"MAIL FROM:<" + o.from + ">", "250"}, {"RCPT TO:<" + o.to + ">", "250"}, {"DATA", "354"},
	} {
		if err := cmd(c[0], c[1]); err != nil {
			return 0, err
		}
	}
	deadline()
	fmt.Fprintf(w, "From: <%s>\r\nTo: <%s>\r\nSubject: tlsrelay bench %d\r\nMessage-ID: <%d.%d@bench.localhost>\r\n\r\n",
		o.from, o.to, i, time.Now().UnixNano(), i)
	w.Write(body)
	w.WriteString(".\r\n")
	if err := w.Flush(); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := expect("250"); err != nil {
		return 0, fmt.Errorf("end of data: %w", err)
	}
	lat := time.Since(t0)
	cmd("QUIT", "221") // the message is accepted; a failed QUIT does not undo it
	return lat, nil
}
