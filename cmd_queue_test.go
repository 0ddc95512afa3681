package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/tlsrelay/tlsrelay/admin"
	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/queue"
)

// queueCmd runs `tlsrelay queue ARGS...` and returns stdout.
func queueCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	err := run(ctx, append([]string{"queue"}, args...), &out, &errb)
	if err != nil && errb.Len() > 0 {
		err = &cmdError{err, errb.String()}
	}
	return out.String(), err
}

type cmdError struct {
	err    error
	stderr string
}

func (e *cmdError) Error() string { return e.err.Error() + ": " + e.stderr }

func mustQueueJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out, err := queueCmd(t, append(args[:1:1], append([]string{"-json"}, args[1:]...)...)...)
	if err != nil {
		t.Fatalf("queue %v: %v", args, err)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("queue %v: output is not JSON: %v\n%s", args, err, out)
	}
}

var tempFail = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}

// TestQueueCLIOnRunningRelay drives every queue subcommand against a
// running relay, through its control socket, with -json parsed back.
func TestQueueCLIOnRunningRelay(t *testing.T) {
	up := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	up.SetMailErr(func(string) error { return tempFail })
	spool := t.TempDir()
	cfg := relayConfig(t, up, "starttls", spool)
	cfg.Queue.Retry.Initial, cfg.Queue.Retry.Max = time.Hour, time.Hour // only the CLI retries
	r := startRelay(t, cfg)
	id := queuedID(t, r.send(t, trickyBody, "a@example.org"))
	r.waitQueue(t, "a deferral", deferredOnce)

	var items []queue.Item
	mustQueueJSON(t, &items, "list", "-dir", spool)
	if len(items) != 1 || items[0].ID != id || items[0].Rcpts[0].Status != queue.Deferred || items[0].Rcpts[0].LastCode != 451 {
		t.Fatalf("list -json = %+v", items)
	}
	out, err := queueCmd(t, "list", "-dir", spool)
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "a@example.org") || !strings.Contains(out, "deferred") {
		t.Fatalf("list = %q, %v", out, err)
	}
	var it queue.Item
	mustQueueJSON(t, &it, "show", "-dir", spool, id)
	if it.ID != id || len(it.History) != 1 {
		t.Fatalf("show -json = %+v", it)
	}

	up.SetMailErr(nil)
	if out, err := queueCmd(t, "retry", "-dir", spool, id); err != nil || !strings.Contains(out, "retry done") {
		t.Fatalf("retry = %q, %v", out, err)
	}
	waitMessages(t, up, 1)
	r.waitQueue(t, "the queue to empty", queueEmpty)

	up.SetMailErr(func(string) error { return tempFail })
	id2 := queuedID(t, r.send(t, trickyBody, "b@example.org"))
	r.waitQueue(t, "a deferral", deferredOnce)
	if _, err := queueCmd(t, "delete", "-dir", spool, id2); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := queueCmd(t, "show", "-dir", spool, id2); err == nil || !strings.Contains(err.Error(), "no such message") {
		t.Fatalf("show after delete = %v, want no such message", err)
	}

	id3 := queuedID(t, r.send(t, trickyBody, "c@example.org"))
	r.waitQueue(t, "a deferral", deferredOnce)
	up.SetMailErr(nil)
	var res struct{ Messages int }
	mustQueueJSON(t, &res, "retry", "-dir", spool, "-all")
	if res.Messages != 1 {
		t.Fatalf("retry -all touched %d messages, want 1 (%s)", res.Messages, id3)
	}
	r.waitQueue(t, "the queue to empty", queueEmpty)

	up.SetMailErr(func(string) error { return tempFail })
	r.send(t, trickyBody, "d@example.org")
	r.waitQueue(t, "a deferral", deferredOnce)
	up.SetMailErr(nil)
	var fr admin.FlushResult
	mustQueueJSON(t, &fr, "flush", "-dir", spool, "-wait", "-timeout", "10s")
	if fr.Remaining != 0 || fr.TimedOut {
		t.Fatalf("flush = %+v", fr)
	}
}

// TestQueueCLIDeadAndRequeue: a dead letter is listed, shown and requeued.
func TestQueueCLIDeadAndRequeue(t *testing.T) {
	up := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	up.SetRcptErr(func(string) error {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	})
	spool := t.TempDir()
	r := startRelay(t, relayConfig(t, up, "starttls", spool))
	id := queuedID(t, r.send(t, trickyBody, "a@example.org"))
	r.waitQueue(t, "the queue to empty", queueEmpty)

	var dead []queue.Item
	mustQueueJSON(t, &dead, "dead", "-dir", spool)
	if len(dead) != 1 || dead[0].ID != id || dead[0].Rcpts[0].Status != queue.Failed {
		t.Fatalf("dead -json = %+v", dead)
	}
	out, err := queueCmd(t, "show", "-dir", spool, id)
	if err != nil || !strings.Contains(out, "dead letter") || !strings.Contains(out, "550 5.1.1") {
		t.Fatalf("show dead = %q, %v", out, err)
	}
	up.SetRcptErr(nil)
	if _, err := queueCmd(t, "requeue", "-dir", spool, id); err != nil {
		t.Fatalf("requeue: %v", err)
	}
	waitMessages(t, up, 1)
	r.waitQueue(t, "the queue to empty", queueEmpty)
}

// TestQueueCLIOffline: with no relay running, the commands work on the
// spool itself, and flush says it needs a relay.
func TestQueueCLIOffline(t *testing.T) {
	up := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	up.SetMailErr(func(string) error { return tempFail })
	spool := t.TempDir()
	r := startRelay(t, relayConfig(t, up, "starttls", spool))
	id := queuedID(t, r.send(t, trickyBody, "a@example.org"))
	r.waitQueue(t, "a deferral", deferredOnce)
	r.stop()

	var items []queue.Item
	mustQueueJSON(t, &items, "list", "-dir", spool)
	if len(items) != 1 || items[0].ID != id {
		t.Fatalf("offline list = %+v", items)
	}
	if _, err := queueCmd(t, "flush", "-dir", spool); err == nil || !strings.Contains(err.Error(), "needs a running relay") {
		t.Fatalf("offline flush = %v", err)
	}
	if _, err := queueCmd(t, "delete", "-dir", spool, id); err != nil {
		t.Fatalf("offline delete: %v", err)
	}
	mustQueueJSON(t, &items, "list", "-dir", spool)
	if len(items) != 0 {
		t.Fatalf("after offline delete: %+v", items)
	}
}

func TestQueueCLIUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"bogus"}, {"show"}, {"retry"}, {"list", "extra"}} {
		if _, err := queueCmd(t, args...); err == nil {
			t.Errorf("queue %v: no error", args)
		}
	}
}

// TestQueueOutputEscapesControls: an upstream whose reply carries terminal
// escape sequences (set the title, clear the screen, C1 CSI) never gets
// them to the operator's terminal raw, in text or JSON, listed or shown.
func TestQueueOutputEscapesControls(t *testing.T) {
	up := startUpstream(t, smtptest.Options{Mode: smtptest.StartTLS})
	up.SetMailErr(func(string) error {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later \x1b]0;pwned\x07\x1b[2J \u009b31m \u202eevil"}
	})
	spool := t.TempDir()
	cfg := relayConfig(t, up, "starttls", spool)
	cfg.Queue.Retry.Initial, cfg.Queue.Retry.Max = time.Hour, time.Hour
	r := startRelay(t, cfg)
	id := queuedID(t, r.send(t, trickyBody, "a@example.org"))
	r.waitQueue(t, "a deferral", deferredOnce)
	for _, args := range [][]string{
		{"list", "-dir", spool}, {"list", "-json", "-dir", spool},
		{"show", "-dir", spool, id}, {"show", "-json", "-dir", spool, id},
	} {
		out, err := queueCmd(t, args...)
		if err != nil {
			t.Fatalf("queue %v: %v", args, err)
		}
		if !strings.Contains(out, "later") {
			t.Fatalf("queue %v does not show the reply:\n%s", args, out)
		}
		for _, c := range out {
			if c == 0x1b || c == 0x07 || c == 0x9b || c == 0x202e {
				t.Fatalf("queue %v printed a raw %U:\n%q", args, c, out)
			}
		}
	}
}
