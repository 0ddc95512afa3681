// Package loadgen loads an SMTP relay with test messages over concurrent
// sessions, one message per session (like Postfix's smtp-source), and
// measures throughput and the end-of-DATA to 250 latency: the engine of
// `tlsrelay bench`.
package loadgen

import (
	"bufio"
	"context"
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

// Options describe one load run against a relay.
type Options struct {
	Server, From, To, Helo string
	N, C                   int           // messages, concurrent sessions
	Size                   int64         // bytes per message
	Timeout                time.Duration // the whole run
	IOTimeout              time.Duration // each read and write
}

// Result is what a load run measured.
type Result struct {
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

// ParseSize reads "4096", "4k", "10m" (KiB and MiB).
func ParseSize(s string) (int64, error) {
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

// Run sends o.N messages over o.C concurrent sessions.
func Run(ctx context.Context, o Options) Result {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	body := benchBody(o.Size)
	var (
		next     atomic.Int64
		mu       sync.Mutex
		lat      = make([]time.Duration, 0, o.N)
		failed   int
		firstErr string
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range min(o.C, o.N) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > int64(o.N) {
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
	if miss := o.N - len(lat) - failed; miss > 0 { // never started: the run timed out
		failed += miss
		if firstErr == "" {
			firstErr = ctx.Err().Error()
		}
	}
	r := Result{Server: o.Server, Messages: o.N, Sessions: o.C, SizeBytes: o.Size, OK: len(lat),
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
func benchOne(ctx context.Context, o Options, body []byte, i int64) (time.Duration, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", o.Server)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r := bufio.NewReader(conn)
	w := bufio.NewWriterSize(conn, 32<<10)
	deadline := func() { conn.SetDeadline(time.Now().Add(o.IOTimeout)) }
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
		{"EHLO " + o.Helo, "250"}, {"MAIL FROM:<" + o.From + ">", "250"}, {"RCPT TO:<" + o.To + ">", "250"}, {"DATA", "354"},
	} {
		if err := cmd(c[0], c[1]); err != nil {
			return 0, err
		}
	}
	deadline()
	fmt.Fprintf(w, "From: <%s>\r\nTo: <%s>\r\nSubject: tlsrelay bench %d\r\nMessage-ID: <%d.%d@bench.localhost>\r\n\r\n",
		o.From, o.To, i, time.Now().UnixNano(), i)
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

// Print writes r as three lines of text.
func (r Result) Print(w io.Writer) {
	fmt.Fprintf(w, "server %s: %d messages of %d bytes over %d sessions at a time\n", r.Server, r.Messages, r.SizeBytes, r.Sessions)
	fmt.Fprintf(w, "ok %d, failed %d, %.3f s, %.1f msg/s\n", r.OK, r.Failed, r.ElapsedS, r.MsgPerSec)
	fmt.Fprintf(w, "end of DATA -> 250 (ms): p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n",
		r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max)
}
