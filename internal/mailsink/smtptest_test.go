package mailsink

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const body = "From: a@example.com\r\nSubject: hi\r\n\r\n.leading dot\r\nline two\r\n"

var users = map[string]string{"alice": "s3cret"}

// dial connects a go-smtp client the way the mode requires, trusting pool.
func dial(t *testing.T, s *Server, pool *x509.CertPool) (*smtp.Client, error) {
	t.Helper()
	cfg := &tls.Config{RootCAs: pool}
	switch s.Mode() {
	case ImplicitTLS:
		return smtp.DialTLS(s.Addr(), cfg)
	case StartTLS:
		return smtp.DialStartTLS(s.Addr(), cfg)
	}
	return smtp.Dial(s.Addr())
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestModesDeliverWithAuth(t *testing.T) {
	for _, mode := range []Mode{Plain, ImplicitTLS, StartTLS} {
		for _, mech := range []string{sasl.Plain, sasl.Login} {
			t.Run(mode.String()+"/"+mech, func(t *testing.T) {
				t.Parallel()
				s := Start(t, Options{Mode: mode, Users: users, AuthRequired: true})
				c, err := dial(t, s, s.RootCAs())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				auth := sasl.NewPlainClient("", "alice", "s3cret")
				if mech == sasl.Login {
					auth = sasl.NewLoginClient("alice", "s3cret")
				}
				if err := c.Auth(auth); err != nil {
					t.Fatalf("auth: %v", err)
				}
				to := []string{"b@example.net", "c@example.net"}
				if err := c.SendMail("a@example.com", to, strings.NewReader(body)); err != nil {
					t.Fatalf("send: %v", err)
				}
				c.Quit()
				msgs, err := s.WaitMessages(waitCtx(t), 1)
				if err != nil {
					t.Fatal(err)
				}
				m := msgs[0]
				if m.From != "a@example.com" || strings.Join(m.To, ",") != strings.Join(to, ",") {
					t.Errorf("envelope = %q %q", m.From, m.To)
				}
				if string(m.Data) != body {
					t.Errorf("data = %q, want %q", m.Data, body)
				}
				if m.AuthUser != "alice" {
					t.Errorf("AuthUser = %q", m.AuthUser)
				}
				if (m.TLS != nil) != (mode != Plain) || m.TLS != nil && !m.TLS.HandshakeComplete {
					t.Errorf("TLS = %+v in mode %v", m.TLS, mode)
				}
				if n := s.Connections(); n != 1 {
					t.Errorf("Connections = %d", n)
				}
			})
		}
	}
}

func TestAuthFailsAndIsRequired(t *testing.T) {
	s := Start(t, Options{Mode: StartTLS, Users: users, AuthRequired: true})
	c, err := dial(t, s, s.RootCAs())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Auth(sasl.NewPlainClient("", "alice", "wrong"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 535 {
		t.Fatalf("auth with a wrong password: %v, want 535", err)
	}
	err = c.Mail("a@example.com", nil)
	if !errors.As(err, &se) || se.Code != 530 {
		t.Fatalf("MAIL before AUTH: %v, want 530", err)
	}
	if n, m := s.AuthAttempts(), s.MailAttempts(); n != 1 || m != 1 {
		t.Errorf("AuthAttempts, MailAttempts = %d, %d; want 1, 1", n, m)
	}
}

// In StartTLS mode, AUTH is neither offered nor accepted before TLS, but an
// attempt is counted.
func TestNoAuthWithoutTLS(t *testing.T) {
	s := Start(t, Options{Mode: StartTLS, NoStartTLS: true, Users: users})
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered with NoStartTLS")
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH offered in plaintext")
	}
	err = c.Auth(sasl.NewPlainClient("", "alice", "s3cret"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 523 {
		t.Fatalf("plaintext AUTH: %v, want 523", err)
	}
	if n := s.AuthAttempts(); n != 1 {
		t.Errorf("AuthAttempts = %d, want 1", n)
	}
}

func TestCertificateChecks(t *testing.T) {
	t.Run("untrusted", func(t *testing.T) {
		s := Start(t, Options{Mode: ImplicitTLS, Untrusted: true})
		_, err := dial(t, s, s.RootCAs())
		var ua x509.UnknownAuthorityError
		if !errors.As(err, &ua) {
			t.Fatalf("dial: %v, want x509.UnknownAuthorityError", err)
		}
	})
	t.Run("wrong name", func(t *testing.T) {
		s := Start(t, Options{Mode: ImplicitTLS, CertNames: []string{"other.example"}})
		_, err := dial(t, s, s.RootCAs())
		var he x509.HostnameError
		if !errors.As(err, &he) {
			t.Fatalf("dial: %v, want x509.HostnameError", err)
		}
	})
	t.Run("ca pem", func(t *testing.T) {
		s := Start(t, Options{Mode: StartTLS})
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(s.CACertPEM()) {
			t.Fatal("CACertPEM does not parse")
		}
		c, err := dial(t, s, pool)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Noop(); err != nil { // forces the handshake
			t.Fatal(err)
		}
	})
}

func TestHooksChangeAtRunTime(t *testing.T) {
	down := &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "down"}
	s := Start(t, Options{RcptErr: func(string) error { return down }})
	send := func() error {
		c, err := dial(t, s, nil)
		if err != nil {
			return err
		}
		defer c.Close()
		return c.SendMail("a@example.com", []string{"b@example.net"}, strings.NewReader(body))
	}
	var se *smtp.SMTPError
	if err := send(); !errors.As(err, &se) || se.Code != 451 {
		t.Fatalf("while down: %v, want 451", err)
	}
	s.SetRcptErr(nil)
	if err := send(); err != nil {
		t.Fatalf("after up: %v", err)
	}
	s.SetDataErr(func(m *Message) error {
		if !bytes.Contains(m.Data, []byte("leading dot")) {
			t.Errorf("DataErr saw %q", m.Data)
		}
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "no"}
	})
	if err := send(); !errors.As(err, &se) || se.Code != 554 {
		t.Fatalf("DataErr: %v, want 554", err)
	}
	if got := len(s.Messages()); got != 1 {
		t.Errorf("recorded %d messages, want 1 (refused ones are not recorded)", got)
	}
}

func TestWaitMessagesHonoursContext(t *testing.T) {
	s := Start(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	msgs, err := s.WaitMessages(ctx, 1)
	if !errors.Is(err, context.Canceled) || len(msgs) != 0 {
		t.Fatalf("WaitMessages = %d, %v", len(msgs), err)
	}
}

// Close closes connections that are still open and waits for them.
func TestCloseWithOpenConnection(t *testing.T) {
	s, err := New(Options{Mode: StartTLS})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Read(make([]byte, 64)); err != nil { // greeting: the session runs
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if s.Connections() != 1 {
		t.Errorf("Connections = %d", s.Connections())
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 64)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read after Close: %v, want EOF or reset", err)
	}
}

func TestClosedAddr(t *testing.T) {
	_, err := net.DialTimeout("tcp", ClosedAddr(t), 5*time.Second)
	if err == nil {
		t.Fatal("dial to ClosedAddr succeeded")
	}
}

func TestDownThenUp(t *testing.T) {
	s := Start(t, Options{Mode: StartTLS})
	send := func() error {
		c, err := dial(t, s, s.RootCAs())
		if err != nil {
			return err
		}
		defer c.Close()
		return c.SendMail("a@example.com", []string{"b@example.net"}, strings.NewReader(body))
	}
	open, err := net.Dial("tcp", s.Addr()) // a session in progress is cut by Down
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if _, err := open.Read(make([]byte, 64)); err != nil {
		t.Fatal(err)
	}
	if err := s.Down(); err != nil {
		t.Fatal(err)
	}
	if err := s.Down(); err != nil {
		t.Fatalf("second Down: %v", err)
	}
	var se *net.OpError
	if err := send(); !errors.As(err, &se) || se.Op != "dial" {
		t.Fatalf("send while down: %v, want a refused dial", err)
	}
	open.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := open.Read(make([]byte, 64)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("open session after Down: read %v, want it closed", err)
	}
	if err := s.Up(); err != nil {
		t.Fatal(err)
	}
	if err := send(); err != nil {
		t.Fatalf("send after Up: %v", err)
	}
	if got := len(s.Messages()); got != 1 {
		t.Errorf("%d messages", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Up(); err == nil {
		t.Error("Up after Close succeeded")
	}
}
