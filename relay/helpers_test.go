package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/policy"
)

// testWait bounds every wait in these tests.
const testWait = 10 * time.Second

var testNow = time.Date(2024, 1, 2, 3, 4, 5, 0, time.FixedZone("", 3600))

// fakeSpool records messages. Like the real queue, it reads the body to the
// end before committing and commits nothing when that read fails.
type fakeSpool struct {
	mu   sync.Mutex
	fail error // returned after reading the body, instead of committing
	msgs []fakeMsg
}

type fakeMsg struct {
	id, client, from string
	to               []string
	routes           [][]string // as the session resolved them at RCPT
	body             string
}

func (f *fakeSpool) EnqueueRouted(ctx context.Context, client, from string, to []string, routes [][]string, body io.Reader) (string, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return "", fmt.Errorf("spool: reading message: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return "", f.fail
	}
	id := fmt.Sprintf("id-%d", len(f.msgs)+1)
	f.msgs = append(f.msgs, fakeMsg{id, client, from, append([]string(nil), to...), routes, string(b)})
	return id, nil
}

func (f *fakeSpool) setFail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

func (f *fakeSpool) messages() []fakeMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeMsg(nil), f.msgs...)
}

// fullError is the spool's "over budget" error.
type fullError struct{}

func (fullError) Error() string { return "spool: over max_bytes" }
func (fullError) Full() bool    { return true }

// testServer is a running Server on 127.0.0.1 with a fake spool.
type testServer struct {
	*Server
	addr  string
	spool *fakeSpool
	logs  *smtptest.LogBuffer
	done  chan error // Serve's result
}

func testOptions() Options {
	return Options{
		Listen: policy.Listen{
			Addr:            "127.0.0.1:0",
			Hostname:        "relay.test",
			MaxMessageBytes: 1 << 20,
			MaxRecipients:   3,
			MaxConnections:  10,
			ReadTimeout:     testWait,
			WriteTimeout:    testWait,
			AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},

			MaxConnectionsPerIP: 10,
			SessionTimeout:      time.Minute,
			MaxLineBytes:        2000,
			LineEndings:         policy.LineEndingsReject,
			MaxTransactions:     10,
			TransactionWait:     testWait,
		},
		Route: func(from, rcpt string) []string {
			if strings.HasSuffix(rcpt, "@nowhere.test") {
				return nil
			}
			return []string{"p"}
		},
		Now: func() time.Time { return testNow },
	}
}

// startServer starts a server with testOptions changed by mod. Cleanup shuts
// it down and checks that Serve returned.
func startServer(t *testing.T, mod func(*Options)) *testServer {
	t.Helper()
	ts := &testServer{spool: &fakeSpool{}, logs: &smtptest.LogBuffer{}, done: make(chan error, 1)}
	o := testOptions()
	o.Spool = ts.spool
	o.Log = slog.New(slog.NewTextHandler(ts.logs, nil))
	if mod != nil {
		mod(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ts.Server = srv
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = l.Addr().String()
	go func() { ts.done <- srv.Serve(l) }()
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

// stop shuts the server down (forcing after a while) and waits for Serve.
func (ts *testServer) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	ts.Shutdown(ctx)
	select {
	case err := <-ts.done:
		if err != nil {
			t.Errorf("Serve returned %v", err)
		}
		ts.done <- nil // a second stop must not block
	case <-time.After(testWait):
		t.Errorf("Serve did not return after Shutdown")
	}
}

// client speaks raw SMTP. Every read and write is bounded by a deadline.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, testWait)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(testWait))
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// reply reads one reply, all its lines, and returns the last line.
func (c *client) reply() string {
	c.t.Helper()
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply: %v (got %q)", err, line)
		}
		if !strings.HasSuffix(line, "\r\n") {
			c.t.Fatalf("reply line %q does not end in CRLF", line)
		}
		line = strings.TrimSuffix(line, "\r\n")
		if len(line) < 4 || line[3] != '-' {
			return line
		}
	}
}

// expect reads one reply and checks that its last line starts with want.
func (c *client) expect(want string) string {
	c.t.Helper()
	got := c.reply()
	if !strings.HasPrefix(got, want) {
		c.t.Fatalf("reply %q, want %q...", got, want)
	}
	return got
}

// send writes s as is.
func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// cmd sends one command line and checks the reply.
func (c *client) cmd(line, want string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.expect(want)
}

// expectEOF checks that the server has closed the connection.
func (c *client) expectEOF() {
	c.t.Helper()
	b, err := c.r.ReadString('\n')
	if err == nil || !errors.Is(err, io.EOF) && !isReset(err) {
		c.t.Fatalf("want the connection closed, read %q, %v", b, err)
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && strings.Contains(err.Error(), "reset")
}

// hello reads the greeting and sends EHLO.
func (c *client) hello() {
	c.t.Helper()
	c.expect("220 relay.test ")
	c.cmd("EHLO client.test", "250 ")
}

// envelope opens a transaction for the given recipients and sends DATA.
func (c *client) envelope(from string, to ...string) {
	c.t.Helper()
	c.cmd("MAIL FROM:<"+from+">", "250 ")
	for _, r := range to {
		c.cmd("RCPT TO:<"+r+">", "250 ")
	}
	c.cmd("DATA", "354 ")
}

// wantReceived is the header the server prepends for client.test.
const wantReceived = "Received: from client.test ([127.0.0.1]) by relay.test (tlsrelay) with ESMTP; Tue, 02 Jan 2024 03:04:05 +0100\r\n"
