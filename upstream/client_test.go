package upstream

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/tlsrelay/tlsrelay/delivery"
	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/policy"
)

const password = "s3cret-app-password"

// body has a line that needs dot-stuffing, 8-bit bytes and a 998-byte line.
var body = "From: app@example.com\r\nTo: b@example.net\r\nSubject: test\r\n\r\n" +
	".leading dot\r\n..two dots\r\nutf-8: \xc3\xa9\r\n" + strings.Repeat("x", 998) + "\r\nend\r\n"

var users = map[string]string{"alice": password}

// fakeProvider is a provider policy for an smtptest server.
func fakeProvider(s *smtptest.Server, mode policy.TLSMode, mech string) *policy.Provider {
	return &policy.Provider{
		Name: "fake",
		Host: s.Host(),
		Port: s.Port(),
		TLS:  policy.TLS{Mode: mode, RootCAs: s.RootCAs()},
		Auth: policy.Auth{Mechanism: mech, Username: "alice", Password: password, PasswordFrom: "env FAKE_PASSWORD"},
	}
}

// newClient returns a Client for p, named "fake", whose log is checked for
// the password when the test ends.
func newClient(t *testing.T, p *policy.Provider) (*Client, *smtptest.LogBuffer) {
	t.Helper()
	logs := &smtptest.LogBuffer{}
	t.Cleanup(func() {
		if strings.Contains(logs.String(), password) {
			t.Errorf("the password is in the log:\n%s", logs)
		}
	})
	return &Client{
		Providers: map[string]*policy.Provider{"fake": p},
		HelloName: "relay.test",
		Timeout:   10 * time.Second,
		Log:       slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, logs
}

// deliver sends body to rcpts through "fake", bounded by 30s.
func deliver(t *testing.T, c *Client, rcpts ...string) []delivery.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msg := &delivery.Message{ID: "m1", From: "app@example.com", Size: int64(len(body)), Body: strings.NewReader(body)}
	res := c.Deliver(ctx, "fake", msg, rcpts)
	if len(res) != len(rcpts) {
		t.Fatalf("%d results for %d recipients", len(res), len(rcpts))
	}
	for i, r := range res {
		if r.Err != nil && strings.Contains(r.Err.Error(), password) {
			t.Errorf("result %d: the password is in the error: %v", i, r.Err)
		}
	}
	return res
}

// wantErr checks that r failed at op, with code, temporary or not.
func wantErr(t *testing.T, r delivery.Result, op string, code int, temporary bool) *Error {
	t.Helper()
	var e *Error
	if !errors.As(r.Err, &e) {
		t.Fatalf("err = %v, want *upstream.Error", r.Err)
	}
	if e.Op != op || e.Code != code || delivery.Temporary(r.Err) != temporary {
		t.Errorf("err = %v (op %q, code %d, temporary %v); want op %q, code %d, temporary %v",
			e, e.Op, e.Code, delivery.Temporary(r.Err), op, code, temporary)
	}
	return e
}

func waitOne(t *testing.T, s *smtptest.Server) smtptest.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := s.WaitMessages(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	return msgs[0]
}

func TestDeliverOverTLSWithAuth(t *testing.T) {
	cases := []struct {
		mode policy.TLSMode
		srv  smtptest.Mode
		mech string
	}{
		{policy.TLSStartTLS, smtptest.StartTLS, "plain"},
		{policy.TLSStartTLS, smtptest.StartTLS, "login"},
		{policy.TLSImplicit, smtptest.ImplicitTLS, "plain"},
		{policy.TLSImplicit, smtptest.ImplicitTLS, "login"},
		{policy.TLSImplicit, smtptest.ImplicitTLS, ""},
	}
	for _, tc := range cases {
		t.Run(string(tc.mode)+"/"+tc.mech, func(t *testing.T) {
			t.Parallel()
			s := smtptest.Start(t, smtptest.Options{Mode: tc.srv, Users: users, AuthRequired: tc.mech != ""})
			c, _ := newClient(t, fakeProvider(s, tc.mode, tc.mech))
			res := deliver(t, c, "b@example.net", "c@example.net")
			for i, r := range res {
				if r.Err != nil {
					t.Fatalf("rcpt %d: %v", i, r.Err)
				}
				if !strings.HasPrefix(r.Reply, "250 ") || !strings.HasPrefix(r.TLS, "TLS 1.3 TLS_") {
					t.Errorf("rcpt %d: Reply %q, TLS %q", i, r.Reply, r.TLS)
				}
			}
			m := waitOne(t, s)
			if string(m.Data) != body {
				t.Errorf("body changed in transit:\n got %q\nwant %q", m.Data, body)
			}
			if m.From != "app@example.com" || strings.Join(m.To, " ") != "b@example.net c@example.net" {
				t.Errorf("envelope = %q %q", m.From, m.To)
			}
			if m.TLS == nil || !m.TLS.HandshakeComplete {
				t.Errorf("server saw TLS %+v", m.TLS)
			}
			if tc.mech != "" && m.AuthUser != "alice" {
				t.Errorf("AuthUser = %q, want alice", m.AuthUser)
			}
		})
	}
}

func TestDeliverPlaintextLoopback(t *testing.T) {
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.Plain, Users: users, AuthRequired: true})
	c, _ := newClient(t, fakeProvider(s, policy.TLSNone, "plain"))
	res := deliver(t, c, "b@example.net")
	if res[0].Err != nil || res[0].TLS != "none" {
		t.Fatalf("result = %+v", res[0])
	}
	if m := waitOne(t, s); m.TLS != nil || m.AuthUser != "alice" || string(m.Data) != body {
		t.Errorf("message = %+v", m)
	}
}

func TestPlaintextRefusedForRemoteHost(t *testing.T) {
	p := &policy.Provider{Name: "fake", Host: "smtp.example.com", Port: 25, TLS: policy.TLS{Mode: policy.TLSNone}}
	c, _ := newClient(t, p)
	c.Dial = func(context.Context, string, string) (net.Conn, error) {
		t.Error("dialled a remote host in plaintext")
		return nil, errors.New("no")
	}
	wantErr(t, deliver(t, c, "b@example.net")[0], "config", 0, true)
}

func TestNoSTARTTLSOffered(t *testing.T) {
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.StartTLS, NoStartTLS: true, Users: users})
	c, _ := newClient(t, fakeProvider(s, policy.TLSStartTLS, "plain"))
	for _, r := range deliver(t, c, "b@example.net", "c@example.net") {
		e := wantErr(t, r, "starttls", 0, true)
		if !strings.Contains(e.Error(), "did not offer STARTTLS; refusing to send in plaintext") {
			t.Errorf("error text: %v", e)
		}
	}
	if a, m, n := s.AuthAttempts(), s.MailAttempts(), len(s.Messages()); a+m+n != 0 {
		t.Errorf("server saw %d AUTH, %d MAIL, %d messages in plaintext; want none", a, m, n)
	}
}

func TestTLSFailuresSendNothing(t *testing.T) {
	cases := []struct {
		name       string
		opts       smtptest.Options
		serverName string
		want       string
	}{
		{"untrusted", smtptest.Options{Untrusted: true}, "", "unknown authority"},
		{"cert for another name", smtptest.Options{CertNames: []string{"other.example"}}, "", "127.0.0.1"},
		{"wrong server_name", smtptest.Options{}, "smtp.wrong.example", "smtp.wrong.example"},
	}
	for _, tc := range cases {
		for _, mode := range []policy.TLSMode{policy.TLSStartTLS, policy.TLSImplicit} {
			t.Run(tc.name+"/"+string(mode), func(t *testing.T) {
				t.Parallel()
				opts := tc.opts
				opts.Users, opts.Mode = users, smtptest.StartTLS
				if mode == policy.TLSImplicit {
					opts.Mode = smtptest.ImplicitTLS
				}
				s := smtptest.Start(t, opts)
				p := fakeProvider(s, mode, "plain")
				p.TLS.ServerName = tc.serverName
				c, _ := newClient(t, p)
				e := wantErr(t, deliver(t, c, "b@example.net")[0], "tls", 0, true)
				msg := e.Error()
				if !strings.Contains(msg, tc.want) || !strings.Contains(msg, "run `tlsrelay probe fake`") {
					t.Errorf("error text lacks %q or the probe hint: %v", tc.want, msg)
				}
				if a, m := s.AuthAttempts(), s.MailAttempts(); a+m != 0 {
					t.Errorf("credentials or envelope sent after a TLS failure: %d AUTH, %d MAIL", a, m)
				}
			})
		}
	}
}

func smtpErr(code int, e1, e2, e3 int, text string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{e1, e2, e3}, Message: text}
}

func TestRecipientReplies(t *testing.T) {
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.StartTLS, RcptErr: func(to string) error {
		switch to {
		case "bad@example.net":
			return smtpErr(550, 5, 1, 1, "no such user")
		case "full@example.net":
			return smtpErr(552, 5, 2, 2, "mailbox full")
		case "later@example.net":
			return smtpErr(451, 4, 3, 0, "try later")
		}
		return nil
	}})
	c, _ := newClient(t, fakeProvider(s, policy.TLSStartTLS, ""))
	res := deliver(t, c, "ok@example.net", "bad@example.net", "full@example.net", "later@example.net", "in<valid@x")
	if res[0].Err != nil {
		t.Errorf("ok@: %v", res[0].Err)
	}
	wantErr(t, res[1], "rcpt", 550, false)
	if res[1].Reply != "550 5.1.1 no such user" {
		t.Errorf("Reply = %q", res[1].Reply)
	}
	wantErr(t, res[2], "rcpt", 552, true)
	wantErr(t, res[3], "rcpt", 451, true)
	wantErr(t, res[4], "rcpt", 0, false)
	if m := waitOne(t, s); strings.Join(m.To, " ") != "ok@example.net" {
		t.Errorf("delivered to %q", m.To)
	}
}

func TestNoRecipientAcceptedNoData(t *testing.T) {
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS,
		RcptErr: func(string) error { return smtpErr(550, 5, 1, 1, "no") }})
	c, _ := newClient(t, fakeProvider(s, policy.TLSImplicit, ""))
	wantErr(t, deliver(t, c, "a@example.net")[0], "rcpt", 550, false)
	if n := len(s.Messages()); n != 0 {
		t.Errorf("%d messages", n)
	}
}

func TestMailAndDataReplies(t *testing.T) {
	cases := []struct {
		name string
		opts smtptest.Options
		op   string
		code int
		temp bool
	}{
		{"MAIL 550", smtptest.Options{MailErr: func(string) error { return smtpErr(550, 5, 7, 1, "sender refused") }}, "mail", 550, false},
		{"MAIL 451", smtptest.Options{MailErr: func(string) error { return smtpErr(451, 4, 3, 0, "later") }}, "mail", 451, true},
		{"DATA 554", smtptest.Options{DataErr: func(*smtptest.Message) error { return smtpErr(554, 5, 6, 0, "spam") }}, "data", 554, false},
		{"DATA 451", smtptest.Options{DataErr: func(*smtptest.Message) error { return smtpErr(451, 4, 3, 0, "later") }}, "data", 451, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.opts.Mode = smtptest.StartTLS
			s := smtptest.Start(t, tc.opts)
			c, _ := newClient(t, fakeProvider(s, policy.TLSStartTLS, ""))
			for _, r := range deliver(t, c, "a@example.net", "b@example.net") {
				wantErr(t, r, tc.op, tc.code, tc.temp)
			}
			if n := len(s.Messages()); n != 0 {
				t.Errorf("%d messages", n)
			}
		})
	}
}

func TestAuthRejectedIsTemporary(t *testing.T) {
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.StartTLS, Users: map[string]string{"alice": "rotated"}, AuthRequired: true})
	c, logs := newClient(t, fakeProvider(s, policy.TLSStartTLS, "login"))
	wantErr(t, deliver(t, c, "a@example.net")[0], "auth", 535, true)
	if !strings.Contains(logs.String(), "level=ERROR msg=\"auth failed\"") {
		t.Errorf("no error-level \"auth failed\" log:\n%s", logs)
	}
	if s.MailAttempts() != 0 {
		t.Error("MAIL sent after a failed AUTH")
	}
}

func TestAuthMechanismNotOffered(t *testing.T) {
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS}) // no AUTH offered
	c, _ := newClient(t, fakeProvider(s, policy.TLSImplicit, "plain"))
	e := wantErr(t, deliver(t, c, "a@example.net")[0], "auth", 0, true)
	if !strings.Contains(e.Error(), "does not offer AUTH PLAIN; it offers no AUTH") {
		t.Errorf("error text: %v", e)
	}
	if s.MailAttempts()+s.AuthAttempts() != 0 {
		t.Error("AUTH or MAIL sent")
	}
}

func TestUnknownProvider(t *testing.T) {
	c := &Client{}
	res := c.Deliver(context.Background(), "nope", &delivery.Message{Body: strings.NewReader(body)}, []string{"a@example.net"})
	wantErr(t, res[0], "config", 0, true)
	if res := c.Deliver(context.Background(), "nope", nil, nil); len(res) != 0 {
		t.Errorf("%d results for no recipients", len(res))
	}
}
