package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"testing"

	"github.com/emersion/go-smtp"
)

func TestReply(t *testing.T) {
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	disk := &fs.PathError{Op: "fsync", Path: "/spool/q", Err: errors.New("no space left on device")}
	wrap := func(err error) error { return fmt.Errorf("spool: reading message: %w", err) }
	for _, tc := range []struct {
		name string
		err  error
		code int
		enh  smtp.EnhancedCode
	}{
		{"spool full", fullError{}, 452, smtp.EnhancedCode{4, 3, 1}},
		{"spool full wrapped", fmt.Errorf("enqueue: %w", fullError{}), 452, smtp.EnhancedCode{4, 3, 1}},
		{"disk error", disk, 451, smtp.EnhancedCode{4, 3, 0}},
		{"unknown error", errors.New("boom"), 451, smtp.EnhancedCode{4, 3, 0}},
		{"spool deadline", context.DeadlineExceeded, 451, smtp.EnhancedCode{4, 3, 0}},
		{"client gone", wrap(io.ErrUnexpectedEOF), 451, smtp.EnhancedCode{4, 3, 0}},
		{"too big", wrap(smtp.ErrDataTooLarge), 552, smtp.EnhancedCode{5, 3, 4}},
		{"read timeout", wrap(timeout), 421, smtp.EnhancedCode{4, 4, 2}},
		{"read timeout, guard", &closedError{timeout}, 421, smtp.EnhancedCode{4, 4, 2}},
		{"bare LF", wrap(errBareLF), 550, smtp.EnhancedCode{5, 6, 0}},
		{"bare CR, guard", wrap(&closedError{errBareCR}), 550, smtp.EnhancedCode{5, 6, 0}},
		{"long line", wrap(smtp.ErrTooLongLine), 554, smtp.EnhancedCode{5, 6, 0}},
		{"no route", errNoRoute, 550, smtp.EnhancedCode{5, 7, 1}},
		{"too many rcpts", errTooManyRcpts, 452, smtp.EnhancedCode{4, 5, 3}},
		{"nested MAIL", errNestedMail, 503, smtp.EnhancedCode{5, 5, 1}},
		{"RCPT before MAIL", errNoMail, 503, smtp.EnhancedCode{5, 5, 1}},
		{"DATA without RCPT", errNoRcpt, 503, smtp.EnhancedCode{5, 5, 1}},
		{"bad sender", wrapErr(errBadSender, "control character 0x00"), 501, smtp.EnhancedCode{5, 1, 7}},
		{"bad recipient", wrapErr(errBadRecipient, "empty"), 501, smtp.EnhancedCode{5, 1, 3}},
		{"access denied", errAccessDenied, 554, smtp.EnhancedCode{5, 7, 1}},
		{"too many connections", errTooManyConns, 421, smtp.EnhancedCode{4, 7, 0}},
		{"shutting down", errShuttingDown, 421, smtp.EnhancedCode{4, 3, 2}},
		{"session over", errSessionOver, 451, smtp.EnhancedCode{4, 3, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := reply(tc.err)
			if r.Code != tc.code || r.EnhancedCode != tc.enh {
				t.Errorf("reply(%v) = %d %v, want %d %v", tc.err, r.Code, r.EnhancedCode, tc.code, tc.enh)
			}
			if r.Message == "" || r.Message == tc.err.Error() {
				t.Errorf("reply(%v) text %q: want a fixed generic text", tc.err, r.Message)
			}
		})
	}
	if reply(nil) != nil {
		t.Error("reply(nil) != nil")
	}
}

// TestReplyNeverFivexxForSpool: nothing the spool can say without a client
// fault under it becomes a permanent failure.
func TestReplyNeverFivexxForSpool(t *testing.T) {
	for _, err := range []error{
		fullError{}, os.ErrPermission, os.ErrNotExist, io.ErrShortWrite, context.Canceled, context.DeadlineExceeded,
		&fs.PathError{Op: "rename", Path: "x", Err: errors.New("read-only file system")},
	} {
		if r := reply(err); r.Code/100 != 4 {
			t.Errorf("reply(%v) = %d, want 4xx", err, r.Code)
		}
	}
}

func TestParseAddress(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" = refused
	}{
		{"a@example.com", "a@example.com"},
		{"A.b+c@EXAMPLE.com", "A.b+c@example.com"},
		{"a b@example.com", ""},
		{"a..b@example.com", `"a..b"@example.com`},
		{"postmaster", ""},
		{"a\r\nb@example.com", ""},
		{"a\x00b@example.com", ""},
		{"a\x7fb@example.com", ""},
		{"victim@evil.test> ORCPT=rfc822;x@allowed.test", ""},
		{"a@exa<mple\"com", ""},
		{"a@example.com.", ""},
		{"a@[127.0.0.1]", "a@[127.0.0.1]"},
		{"a@[IPv6:::1]", "a@[IPv6:::1]"},
		{"a@[300.0.0.1]", ""},
		{string(make([]byte, 255)), ""},
	} {
		a, err := parseAddress(tc.in)
		if got := a.String(); (err == nil) != (tc.want != "") || err == nil && got != tc.want {
			t.Errorf("parseAddress(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestNewRefusesOpenLimits(t *testing.T) {
	for name, mod := range map[string]func(*Options){
		"empty addr":      func(o *Options) { o.Listen.Addr = "" },
		"no hostname":     func(o *Options) { o.Listen.Hostname = "" },
		"no size limit":   func(o *Options) { o.Listen.MaxMessageBytes = 0 },
		"no rcpt limit":   func(o *Options) { o.Listen.MaxRecipients = 0 },
		"no conn limit":   func(o *Options) { o.Listen.MaxConnections = 0 },
		"no per-IP limit": func(o *Options) { o.Listen.MaxConnectionsPerIP = 0 },
		"no lifetime":     func(o *Options) { o.Listen.SessionTimeout = 0 },
		"short lines":     func(o *Options) { o.Listen.MaxLineBytes = 100 },
		"line endings":    func(o *Options) { o.Listen.LineEndings = "lf" },
		"no read timeout": func(o *Options) { o.Listen.ReadTimeout = 0 },
		"no spool":        func(o *Options) { o.Spool = nil },
	} {
		o := testOptions()
		o.Spool = &fakeSpool{}
		mod(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}
