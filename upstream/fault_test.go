package upstream

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/delivery"
	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/policy"
)

// scripted serves each connection to a raw loopback listener with handle, for
// faults a go-smtp server cannot produce. When the test ends, stop is closed,
// the listener and connections are closed, and the handlers are waited for.
func scripted(t *testing.T, handle func(c net.Conn, stop <-chan struct{})) *policy.Provider {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c, stop)
			}()
		}
	}()
	t.Cleanup(func() {
		close(stop)
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	a := ln.Addr().(*net.TCPAddr)
	return &policy.Provider{Name: "fake", Host: a.IP.String(), Port: a.Port, TLS: policy.TLS{Mode: policy.TLSNone}}
}

// silent accepts and never says anything.
func silent(c net.Conn, _ <-chan struct{}) { io.Copy(io.Discard, c) }

// timed runs Deliver once with a bound of 20s and returns its only result
// and how long it took.
func timed(t *testing.T, c *Client, ctx context.Context, msg *delivery.Message) (delivery.Result, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	res := c.Deliver(ctx, "fake", msg, []string{"a@example.net"})
	return res[0], time.Since(start)
}

func smallMsg() *delivery.Message {
	return &delivery.Message{ID: "m1", From: "app@example.com", Body: strings.NewReader(body)}
}

func TestConnectionRefused(t *testing.T) {
	host, port, err := net.SplitHostPort(smtptest.ClosedAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	p := &policy.Provider{Name: "fake", Host: host, TLS: policy.TLS{Mode: policy.TLSImplicit}}
	if p.Port, err = strconv.Atoi(port); err != nil {
		t.Fatal(err)
	}
	c, _ := newClient(t, p)
	r, _ := timed(t, c, context.Background(), smallMsg())
	wantErr(t, r, "dial", 0, true)
}

// A server that accepts and stays silent is given up on after Timeout: at
// the greeting in plaintext, in the handshake with implicit TLS (G11).
func TestSilentServerTimesOut(t *testing.T) {
	for mode, op := range map[policy.TLSMode]string{policy.TLSNone: "greeting", policy.TLSStartTLS: "greeting", policy.TLSImplicit: "tls"} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			p := scripted(t, silent)
			p.TLS.Mode = mode
			c, _ := newClient(t, p)
			c.Timeout = 200 * time.Millisecond
			r, took := timed(t, c, context.Background(), smallMsg())
			wantErr(t, r, op, 0, true)
			if !errors.Is(r.Err, os.ErrDeadlineExceeded) || took > 5*time.Second {
				t.Errorf("after %v: %v; want a deadline error after about 200ms", took, r.Err)
			}
		})
	}
}

func TestContextCancelClosesConnection(t *testing.T) {
	p := scripted(t, silent)
	c, _ := newClient(t, p) // Timeout 10s: only ctx can end it early
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	r, took := timed(t, c, ctx, smallMsg())
	wantErr(t, r, "greeting", 0, true)
	if !errors.Is(r.Err, context.DeadlineExceeded) || took > 5*time.Second {
		t.Errorf("after %v: %v; want the context's deadline", took, r.Err)
	}
}

// stall answers up to DATA, then stops reading.
func stall(c net.Conn, stop <-chan struct{}) {
	r := bufio.NewReader(c)
	io.WriteString(c, "220 stall.test ESMTP\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		switch strings.ToUpper(strings.Fields(line + " x")[0]) {
		case "EHLO":
			io.WriteString(c, "250 stall.test\r\n")
		case "MAIL", "RCPT":
			io.WriteString(c, "250 ok\r\n")
		case "DATA":
			io.WriteString(c, "354 go ahead\r\n")
			<-stop
			return
		default:
			io.WriteString(c, "502 no\r\n")
		}
	}
}

// endless is an unbounded message body.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

// A server that stops reading the body cannot hold the delivery: every
// write has a deadline (G11).
func TestStalledBodyTimesOut(t *testing.T) {
	p := scripted(t, stall)
	c, _ := newClient(t, p)
	c.Timeout = 200 * time.Millisecond
	dials := 0
	c.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials++
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	msg := &delivery.Message{ID: "m1", From: "app@example.com", Body: endless{}}
	r, took := timed(t, c, context.Background(), msg)
	wantErr(t, r, "data", 0, true)
	if !errors.Is(r.Err, os.ErrDeadlineExceeded) || took > 10*time.Second {
		t.Errorf("after %v: %v; want a write deadline error", took, r.Err)
	}
	if dials != 1 {
		t.Errorf("Dial seam called %d times", dials)
	}
}

// A server that sends an endless multi-line reply is cut off (G12).
func TestEndlessReplyIsBounded(t *testing.T) {
	p := scripted(t, func(c net.Conn, stop <-chan struct{}) {
		io.WriteString(c, "220 big.test ESMTP\r\n")
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			return
		}
		line := "250-" + strings.Repeat("x", 500) + "\r\n"
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := io.WriteString(c, line); err != nil {
				return
			}
		}
	})
	c, _ := newClient(t, p)
	r, took := timed(t, c, context.Background(), smallMsg())
	wantErr(t, r, "ehlo", 0, true)
	if !errors.Is(r.Err, errReplyTooLong) || took > 10*time.Second {
		t.Errorf("after %v: %v; want errReplyTooLong", took, r.Err)
	}
}
