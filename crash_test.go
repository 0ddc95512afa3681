package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/internal/smtptest"
)

// buildBinary builds tlsrelay once per test into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tlsrelay")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// relayProcess is `tlsrelay serve` running as a child process.
type relayProcess struct {
	cmd  *exec.Cmd
	done chan error
	logs *smtptest.LogBuffer

	mu      sync.Mutex
	newLine chan struct{} // closed and replaced on every log line
}

// waitLog waits (at most 20s) until the log has a line containing s.
func (p *relayProcess) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		p.mu.Lock()
		ch := p.newLine
		p.mu.Unlock()
		if strings.Contains(p.logs.String(), s) {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no log line with %q within 20s:\n%s", s, p.logs)
		}
	}
}

// startProcess starts serve and waits (bounded) for its "listening" log line.
func startProcess(t *testing.T, bin, config string) *relayProcess {
	t.Helper()
	cmd := exec.Command(bin, "serve", "-config", config)
	cmd.Env = append(os.Environ(), "UP_PASSWORD="+testPassword)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &relayProcess{cmd: cmd, done: make(chan error, 1), logs: &smtptest.LogBuffer{}, newLine: make(chan struct{})}
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			fmt.Fprintln(p.logs, sc.Text())
			p.mu.Lock()
			close(p.newLine)
			p.newLine = make(chan struct{})
			p.mu.Unlock()
			if strings.Contains(sc.Text(), "msg=listening") {
				once.Do(func() { close(listening) })
			}
		}
		io.Copy(io.Discard, stderr)
		p.done <- cmd.Wait()
	}()
	select {
	case <-listening:
	case err := <-p.done:
		t.Fatalf("serve exited before listening: %v\n%s", err, p.logs)
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("serve did not listen within 20s\n%s", p.logs)
	}
	return p
}

// kill sends sig and waits for the process to end.
func (p *relayProcess) kill(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		return err
	case <-time.After(45 * time.Second):
		p.cmd.Process.Kill()
		t.Fatalf("relay did not exit within 45s of %v", sig)
		return nil
	}
}

var tokenRE = regexp.MustCompile(`X-Token: (\S+)`)

// TestCrashKill9LosesNothing runs the real binary, sends messages from
// several clients at once, kills the relay with SIGKILL at random moments,
// restarts it, and checks that every message that got 250 reaches the
// upstream. Duplicates are allowed (delivery is at least once) and reported.
func TestCrashKill9LosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary; skipped with -short")
	}
	bin := buildBinary(t)
	up := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	addr := freeAddr(t)
	config := writeProcessConfig(t, up, addr)

	var mu sync.Mutex
	acked := map[string]bool{}
	rounds, clients := 4, 4
	for round := 0; round < rounds; round++ {
		p := startProcess(t, bin, config)
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; ctx.Err() == nil && n < 500; n++ {
					tok := fmt.Sprintf("r%d-c%d-n%d", round, c, n)
					body := "Subject: crash test\r\nX-Token: " + tok + "\r\n\r\nbody " + tok + "\r\n"
					if _, err := sendRaw(addr, "app@example.com", []string{"a@example.org"}, body); err != nil {
						return // the relay died; this message was not acknowledged
					}
					mu.Lock()
					acked[tok] = true
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond) // fault injection: when to pull the plug
		p.kill(t, syscall.SIGKILL)
		stop()
		wg.Wait()
	}

	p := startProcess(t, bin, config)
	mu.Lock()
	want := len(acked)
	mu.Unlock()
	if want == 0 {
		t.Fatal("no message was acknowledged; the test proved nothing")
	}
	deadline := time.Now().Add(60 * time.Second)
	for missing := missingTokens(up, acked); len(missing) > 0; missing = missingTokens(up, acked) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged messages never arrived, e.g. %v\nrelay log:\n%s", len(missing), want, missing[:min(5, len(missing))], p.logs)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		up.WaitMessages(ctx, len(up.Messages())+1) // wake on the next arrival, or after a second
		cancel()
	}
	if err := p.kill(t, syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM: exit %v, want 0", err)
	}
	dups, unacked := 0, 0
	for tok, n := range receivedTokens(up) {
		dups += n - 1
		if !acked[tok] {
			unacked++ // committed, but the client never saw the 250: it would resend
		}
	}
	t.Logf("acknowledged %d messages over %d SIGKILLs; upstream received %d: %d duplicate deliveries, "+
		"%d delivered whose 250 the client never read", want, rounds, len(up.Messages()), dups, unacked)
}

// receivedTokens counts the deliveries of each token.
func receivedTokens(up *smtptest.Server) map[string]int {
	seen := map[string]int{}
	for _, m := range up.Messages() {
		if mm := tokenRE.FindSubmatch(m.Data); mm != nil {
			seen[string(mm[1])]++
		}
	}
	return seen
}

func missingTokens(up *smtptest.Server, acked map[string]bool) []string {
	seen := receivedTokens(up)
	var missing []string
	for tok := range acked {
		if seen[tok] == 0 {
			missing = append(missing, tok)
		}
	}
	return missing
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// writeProcessConfig writes a relay.yaml for the child process, which
// reads UP_PASSWORD from its environment.
func writeProcessConfig(t *testing.T, up *smtptest.Server, addr string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(path, []byte(configYAML(t, up, cfgOpts{addr: addr})), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
