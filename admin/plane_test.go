package admin_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/admin"
	"github.com/tlsrelay/tlsrelay/queue"
)

const testToken = "tok-3f9a1c77-not-a-real-token"

// publicServer serves PublicHandler for a spool holding one message, on
// 127.0.0.1; it returns the base URL, the message ID, the queue and the log.
func publicServer(t *testing.T, token string, lim admin.Limits) (base, id string, q *queue.Queue, log *bytes.Buffer) {
	t.Helper()
	q, err := admin.OpenSpool(t.TempDir(), func(string, string) []string { return []string{"p"} })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	id, err = q.Enqueue(context.Background(), "127.0.0.1", "app@example.com", []string{"secret-rcpt@example.net"}, strings.NewReader("Subject: x\r\n\r\nhi\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log = &bytes.Buffer{}
	m := admin.NewMetrics()
	h := admin.PublicHandler(admin.PublicOptions{
		Options: admin.Options{Queue: q, Metrics: m}, Token: token, Loopback: true,
		Log: slog.New(m.Handler(slog.NewTextHandler(log, nil))),
	})
	stop := admin.Serve(ln, h, lim)
	t.Cleanup(stop)
	return "http://" + ln.Addr().String(), id, q, log
}

func do(t *testing.T, method, url string, hdr map[string]string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, url, nil)
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Without a token, admin.addr is the monitoring plane only: it never lists
// a message, and DELETE and POST change nothing.
func TestPublicPlaneWithoutToken(t *testing.T) {
	base, id, q, _ := publicServer(t, "", admin.Limits{})
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/metrics", 200}, {"HEAD", "/metrics", 200}, {"GET", "/healthz", 200}, {"GET", "/readyz", 200},
		{"POST", "/metrics", 405}, {"DELETE", "/healthz", 405}, {"PUT", "/readyz", 405},
		{"GET", "/queue", 404}, {"GET", "/queue/" + id, 404}, {"DELETE", "/queue/" + id, 404},
		{"POST", "/queue/flush", 404}, {"POST", "/queue/retry", 404}, {"GET", "/dead", 404}, {"GET", "/nope", 404},
	} {
		code, body := do(t, c.method, base+c.path, nil)
		if code != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, code, c.want)
		}
		if strings.Contains(body, "secret-rcpt") || strings.Contains(body, id) && c.path != "/queue/"+id {
			t.Errorf("%s %s shows the message: %s", c.method, c.path, body)
		}
	}
	if _, err := q.Get(id); err != nil {
		t.Fatalf("the message is gone after the requests: %v", err)
	}
}

// With a token, the queue API answers 401 without it or with a wrong one
// (logged, without the token), and works with it.
func TestPublicQueueAPIWithToken(t *testing.T) {
	base, id, q, log := publicServer(t, testToken, admin.Limits{})
	for _, hdr := range []map[string]string{nil, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + testToken},
		{"Authorization": "Bearer " + testToken + "x"}} {
		if code, body := do(t, "DELETE", base+"/queue/"+id, hdr); code != 401 || strings.Contains(body, "secret-rcpt") {
			t.Errorf("DELETE with %v: %d %s, want 401", hdr, code, body)
		}
	}
	if _, err := q.Get(id); err != nil {
		t.Fatalf("refused DELETEs deleted the message: %v", err)
	}
	if !strings.Contains(log.String(), "admin request refused") || strings.Contains(log.String(), testToken) {
		t.Errorf("log of the refusals: %s", log)
	}
	if _, text := do(t, "GET", base+"/metrics", nil); !strings.Contains(text, `tlsrelay_admin_requests_refused_total{reason="wrong token"} 2`) ||
		!strings.Contains(text, `tlsrelay_admin_requests_refused_total{reason="no Authorization header"} 1`) {
		t.Errorf("/metrics does not count the refusals:\n%s", grepLines(text, "refused"))
	}
	auth := map[string]string{"Authorization": "Bearer " + testToken}
	if code, body := do(t, "GET", base+"/queue", auth); code != 200 || !strings.Contains(body, id) {
		t.Errorf("GET /queue with the token: %d %s", code, body)
	}
	if code, _ := do(t, "DELETE", base+"/queue/"+id, auth); code != 200 {
		t.Errorf("DELETE with the token: %d", code)
	}
	if _, err := q.Get(id); err == nil {
		t.Error("DELETE with the token left the message")
	}
}

// A loopback listener answers only requests for a loopback host: a page
// that rebinds its own name to 127.0.0.1 gets nothing.
func TestPublicHostCheck(t *testing.T) {
	base, _, _, _ := publicServer(t, testToken, admin.Limits{})
	for host, want := range map[string]int{"attacker.example": 421, "attacker.example:80": 421, "localhost:9090": 200, "[::1]:1": 200, "127.0.0.2": 200} {
		if code, _ := do(t, "GET", base+"/healthz", map[string]string{"Host": host}); code != want {
			t.Errorf("Host %s: %d, want %d", host, code, want)
		}
	}
}

// 1,000 idle connections hold no more than the cap; once they time out, or
// once they close, the scraper gets /metrics again.
func TestIdleConnectionFlood(t *testing.T) {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil && rl.Cur < 2200 {
		t.Skipf("needs 2,200 open files, the limit is %d (ulimit -n)", rl.Cur)
	}
	base, _, _, _ := publicServer(t, "", admin.Limits{MaxConns: 16, ReadHeaderTimeout: 500 * time.Millisecond})
	addr := strings.TrimPrefix(base, "http://")
	flood := func() []net.Conn {
		var cs []net.Conn
		for range 1000 {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatalf("dial %d: %v", len(cs), err)
			}
			cs = append(cs, c)
		}
		return cs
	}
	scrapeWithin := func(what string, d time.Duration) {
		deadline := time.Now().Add(d)
		for {
			resp, err := (&http.Client{Timeout: time.Second}).Get(base + "/metrics")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no /metrics within %s %s: %v", d, what, err)
			}
			time.Sleep(50 * time.Millisecond) // poll interval of a bounded retry, not synchronisation
		}
	}
	// The server closes every one of them: those past the cap at once, the
	// others at ReadHeaderTimeout. Without the limits, each read would time
	// out here instead.
	cs := flood()
	buf := make([]byte, 1)
	for i, c := range cs {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(buf); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("idle connection %d still open after 5s (read: %v)", i, err)
		}
	}
	scrapeWithin("after 1,000 idle connections time out", 10*time.Second)
	for _, c := range cs {
		c.Close()
	}
	cs = flood()
	for _, c := range cs {
		c.Close()
	}
	scrapeWithin("after 1,000 connections close", 10*time.Second)
}

func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
