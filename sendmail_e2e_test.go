package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/smtptest"
)

// The sendmail tests drive the real binary, as PHP, cron and mailx do.

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// tlsrelayBinary builds the binary once per test run.
func tlsrelayBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tlsrelay-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "tlsrelay")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = errors.New(string(out))
		}
	})
	if binErr != nil {
		t.Fatalf("go build: %v", binErr)
	}
	return binPath
}

// sendmailResult is how one run of the binary ended.
type sendmailResult struct {
	status int
	stderr string
	took   time.Duration
}

// runSendmail runs `tlsrelay sendmail ARGS` (or prog ARGS, prog a link named
// sendmail) with stdin.
func runSendmail(t *testing.T, prog string, stdin string, args ...string) sendmailResult {
	t.Helper()
	if filepath.Base(prog) != "sendmail" {
		args = append([]string{"sendmail"}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), "TLSRELAY_SERVER=", "USER=tester")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	start := time.Now()
	err := cmd.Run()
	res := sendmailResult{stderr: errb.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.status = ee.ExitCode()
	case err != nil:
		t.Fatalf("run %s: %v", prog, err)
	}
	return res
}

// sendmailRelay is a relay to a fake upstream, for the sendmail tests.
func sendmailRelay(t *testing.T, listen ...string) (*runningRelay, *smtptest.Server) {
	up := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	return startRelay(t, testConfig(t, up, cfgOpts{listen: listen})), up
}

func header(t *testing.T, data []byte, name string) (string, bool) {
	t.Helper()
	head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	for _, l := range strings.Split(string(head), "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// -t -i with To, Cc and Bcc: all three get it, the Bcc header is gone, a
// lone dot survives, and the existing fields are untouched.
func TestSendmailReadRecipients(t *testing.T) {
	r, up := sendmailRelay(t)
	in := "From: App <app@example.com>\nTo: to@example.org\nCc: cc@example.org\nBcc: bcc@example.org\n" +
		"Subject: t\nDate: Mon, 01 Jan 2024 00:00:00 +0000\nMessage-ID: <keep@example.com>\n\nline one\n.\nline three\n"
	res := runSendmail(t, tlsrelayBinary(t), in, "-t", "-i", "-f", "bounce@example.com", "-server", r.addr)
	if res.status != 0 {
		t.Fatalf("exit %d: %s", res.status, res.stderr)
	}
	m := waitMessages(t, up, 1)[0]
	if m.From != "bounce@example.com" || strings.Join(m.To, ",") != "to@example.org,cc@example.org,bcc@example.org" {
		t.Fatalf("envelope %s -> %v", m.From, m.To)
	}
	data := stripReceived(t, m.Data)
	if _, ok := header(t, data, "Bcc"); ok || bytes.Contains(data, []byte("bcc@")) {
		t.Errorf("Bcc delivered: %q", data)
	}
	for name, want := range map[string]string{"Date": "Mon, 01 Jan 2024 00:00:00 +0000", "Message-ID": "<keep@example.com>", "From": "App <app@example.com>"} {
		if got, _ := header(t, data, name); got != want {
			t.Errorf("%s: %q, want %q untouched", name, got, want)
		}
	}
	if !bytes.HasSuffix(data, []byte("\r\n\r\nline one\r\n.\r\nline three\r\n")) {
		t.Errorf("body with -i: %q", data)
	}
}

// Without -i a lone dot ends the message; LF-only input arrives as CRLF;
// missing From, Date and Message-ID are added; an argument recipient.
func TestSendmailDotAndAddedFields(t *testing.T) {
	r, up := sendmailRelay(t)
	res := runSendmail(t, tlsrelayBinary(t), "Subject: cron\n\nfirst\n.\nnever sent\n", "-F", "Cron Daemon", "-f", "cron@example.com", "-server", r.addr, "admin@example.org")
	if res.status != 0 {
		t.Fatalf("exit %d: %s", res.status, res.stderr)
	}
	m := waitMessages(t, up, 1)[0]
	data := stripReceived(t, m.Data)
	if bytes.Contains(data, []byte("never sent")) || !bytes.HasSuffix(data, []byte("\r\n\r\nfirst\r\n")) {
		t.Errorf("lone dot without -i: %q", data)
	}
	if bytes.Contains(bytes.ReplaceAll(data, []byte("\r\n"), nil), []byte("\n")) {
		t.Errorf("a bare LF arrived: %q", data)
	}
	if v, _ := header(t, data, "From"); v != `"Cron Daemon" <cron@example.com>` {
		t.Errorf("added From: %q", v)
	}
	for _, name := range []string{"Date", "Message-ID"} {
		if _, ok := header(t, data, name); !ok {
			t.Errorf("no %s added: %q", name, data)
		}
	}
}

// A link named sendmail is `tlsrelay sendmail`.
func TestSendmailByName(t *testing.T) {
	r, up := sendmailRelay(t)
	link := filepath.Join(t.TempDir(), "sendmail")
	if err := os.Symlink(tlsrelayBinary(t), link); err != nil {
		t.Fatal(err)
	}
	if res := runSendmail(t, link, "Subject: x\n\nhi\n", "-oi", "-server", r.addr, "a@example.org"); res.status != 0 {
		t.Fatalf("exit %d: %s", res.status, res.stderr)
	}
	if m := waitMessages(t, up, 1)[0]; m.From != "tester@"+hostname() {
		t.Errorf("default sender %q, want $USER@host", m.From)
	}
	if res := runSendmail(t, link, "", "-bs"); res.status != 64 || !strings.Contains(res.stderr, "-bs is not supported") {
		t.Errorf("-bs: exit %d %q, want 64 naming the mode", res.status, res.stderr)
	}
	if res := runSendmail(t, link, "x\n", "-server", r.addr); res.status != 64 || !strings.Contains(res.stderr, "no recipients") {
		t.Errorf("no recipient: exit %d %q, want 64", res.status, res.stderr)
	}
}

// A stopped relay: exit 75 within -wait plus 2 s, naming the address.
func TestSendmailRelayDown(t *testing.T) {
	addr := smtptest.ClosedAddr(t)
	res := runSendmail(t, tlsrelayBinary(t), "Subject: x\n\nhi\n", "-wait", "1s", "-server", addr, "a@example.org")
	if res.status != 75 || !strings.Contains(res.stderr, addr) || res.took > 3*time.Second {
		t.Fatalf("exit %d after %s: %q; want 75 within 3s naming %s", res.status, res.took, res.stderr, addr)
	}
}

// A relay that starts while sendmail waits gets the message.
func TestSendmailRelayStartsDuringWait(t *testing.T) {
	up := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	addr := smtptest.ClosedAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tlsrelayBinary(t), "sendmail", "-v", "-wait", "20s", "-server", addr, "a@example.org")
	cmd.Stdin = strings.NewReader("Subject: late\n\nhi\n")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	if !sc.Scan() || !strings.Contains(sc.Text(), "not accepting") {
		t.Fatalf("sendmail -v did not report waiting: %q", sc.Text())
	}
	startRelayOn(t, testConfig(t, up, cfgOpts{}), addr) // now the relay is up
	go func() {
		for sc.Scan() { // drain the rest
		}
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sendmail: %v", err)
	}
	if m := waitMessages(t, up, 1)[0]; !bytes.Contains(m.Data, []byte("Subject: late")) {
		t.Fatalf("delivered %q", m.Data)
	}
}

// The relay's 4xx is 75, its 5xx for a recipient 69, a message over its
// size 65 before the body is sent.
func TestSendmailReplyStatuses(t *testing.T) {
	r, _ := sendmailRelay(t, "allowed_recipients: ['*@example.org']", "max_message_bytes: 2048")
	bin := tlsrelayBinary(t)
	res := runSendmail(t, bin, "Subject: x\n\nhi\n", "-server", r.addr, "someone@elsewhere.example")
	if res.status != 69 || !strings.Contains(res.stderr, "refused recipient <someone@elsewhere.example>: 5") {
		t.Errorf("refused recipient: exit %d %q, want 69 with the reply", res.status, res.stderr)
	}
	res = runSendmail(t, bin, "Subject: big\n\n"+strings.Repeat("x", 4000)+"\n", "-server", r.addr, "a@example.org")
	if res.status != 65 || !strings.Contains(res.stderr, "2048") {
		t.Errorf("too large: exit %d %q, want 65 naming the limit", res.status, res.stderr)
	}
	full, _ := sendmailRelay(t, "max_connections: 1")
	hold, err := net.DialTimeout("tcp", full.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	hold.SetReadDeadline(time.Now().Add(5 * time.Second))
	if greeting, err := bufio.NewReader(hold).ReadString('\n'); err != nil || !strings.HasPrefix(greeting, "220") {
		t.Fatalf("first connection: %q %v", greeting, err)
	}
	res = runSendmail(t, bin, "Subject: x\n\nhi\n", "-wait", "500ms", "-server", full.addr, "a@example.org")
	if res.status != 75 || !strings.Contains(res.stderr, "421") {
		t.Errorf("relay busy (421): exit %d %q, want 75", res.status, res.stderr)
	}
}

// A link named mailq lists the relay's queue, found through -config.
func TestMailq(t *testing.T) {
	up := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	up.SetMailErr(func(string) error { return tempFail })
	cfg := testConfig(t, up, cfgOpts{})
	cfg.Queue.Retry.Initial, cfg.Queue.Retry.Max = time.Hour, time.Hour
	r := startRelay(t, cfg)
	id := queuedID(t, r.send(t, trickyBody, "queued@example.org"))
	r.waitQueue(t, "a deferral", deferredOnce)
	conf := filepath.Join(t.TempDir(), "relay.yaml")
	os.WriteFile(conf, []byte("queue: {dir: "+cfg.Queue.Dir+"}\n"), 0o600)
	link := filepath.Join(t.TempDir(), "mailq")
	if err := os.Symlink(tlsrelayBinary(t), link); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, link, "-config", conf).CombinedOutput()
	if err != nil || !strings.Contains(string(out), id) || !strings.Contains(string(out), "queued@example.org") {
		t.Fatalf("mailq: %v\n%s", err, out)
	}
}

// 8-bit UTF-8 content arrives byte for byte (BODY=8BITMIME); a UTF-8
// sender, which this relay does not offer SMTPUTF8 for, is refused with
// the relay's reply and exit 65.
func TestSendmailEightBit(t *testing.T) {
	r, up := sendmailRelay(t)
	res := runSendmail(t, tlsrelayBinary(t), "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\n\nGrüße, 你好\n", "-f", "jorg@example.com", "-server", r.addr, "a@example.org")
	if res.status != 0 {
		t.Fatalf("exit %d: %s", res.status, res.stderr)
	}
	m := waitMessages(t, up, 1)[0]
	if m.From != "jorg@example.com" || !bytes.HasSuffix(m.Data, []byte("\r\n\r\nGrüße, 你好\r\n")) {
		t.Fatalf("delivered from %q: %q", m.From, m.Data)
	}
}

func TestSendmailUTF8SenderRefused(t *testing.T) {
	r, _ := sendmailRelay(t)
	res := runSendmail(t, tlsrelayBinary(t), "Subject: x\n\nhi\n", "-f", "jörg@example.com", "-server", r.addr, "a@example.org")
	if res.status != 65 || !strings.Contains(res.stderr, "SMTPUTF8") {
		t.Fatalf("exit %d %q, want 65 with the relay's reply", res.status, res.stderr)
	}
}
