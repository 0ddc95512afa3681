package mailsink

import (
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// bearerClient is a minimal XOAUTH2 client that records the challenge.
type bearerClient struct {
	ir        string
	challenge []byte
}

func (b *bearerClient) Start() (string, []byte, error) { return "XOAUTH2", []byte(b.ir), nil }

func (b *bearerClient) Next(challenge []byte) ([]byte, error) {
	b.challenge = challenge
	return []byte{}, nil
}

func bearer(user, token string) *bearerClient {
	return &bearerClient{ir: "user=" + user + "\x01auth=Bearer " + token + "\x01\x01"}
}

func goodToken(user, token string) bool { return user == "alice@example.com" && token == "good-token" }

func TestXOAuth2(t *testing.T) {
	s := Start(t, Options{Mode: ImplicitTLS, Users: users, Tokens: goodToken, AuthRequired: true})
	c, err := dial(t, s, s.RootCAs())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, mechs := c.Extension("AUTH"); !ok || mechs != "PLAIN LOGIN XOAUTH2" {
		t.Errorf("AUTH %q, want PLAIN LOGIN XOAUTH2", mechs)
	}
	bad := bearer("alice@example.com", "expired-token")
	var se *smtp.SMTPError
	if err := c.Auth(bad); !errors.As(err, &se) || se.Code != 535 {
		t.Errorf("bad token: %v, want 535", err)
	}
	if !strings.Contains(string(bad.challenge), `"status":"401"`) {
		t.Errorf("challenge %q, want the JSON error", bad.challenge)
	}
	if err := c.Auth(bearer("alice@example.com", "good-token")); err != nil {
		t.Fatalf("good token on the same connection: %v", err)
	}
	if err := c.SendMail("a@example.com", []string{"b@example.net"}, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	msgs, err := s.WaitMessages(waitCtx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	if m := msgs[0]; m.AuthMech != "XOAUTH2" || m.AuthUser != "alice@example.com" {
		t.Errorf("AuthMech %q, AuthUser %q", m.AuthMech, m.AuthUser)
	}
	if n := s.AuthAttempts(); n != 2 {
		t.Errorf("AuthAttempts = %d, want 2", n)
	}
}

func TestXOAuth2Malformed(t *testing.T) {
	s := Start(t, Options{Mode: ImplicitTLS, Tokens: goodToken})
	for _, ir := range []string{"", "user=alice@example.com\x01auth=Bearer good-token", "auth=Bearer good-token\x01user=alice@example.com\x01\x01"} {
		c, err := dial(t, s, s.RootCAs())
		if err != nil {
			t.Fatal(err)
		}
		var se *smtp.SMTPError
		if err := c.Auth(&bearerClient{ir: ir}); !errors.As(err, &se) || se.Code/100 != 5 {
			t.Errorf("initial response %q: %v, want 5xx", ir, err)
		}
		c.Close()
	}
}

func TestAuthMechRecordedAndLimited(t *testing.T) {
	s := Start(t, Options{Mode: StartTLS, Users: users, AuthMechanisms: []string{"LOGIN"}})
	c, err := dial(t, s, s.RootCAs())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, mechs := c.Extension("AUTH"); mechs != "LOGIN" {
		t.Errorf("AUTH %q, want LOGIN", mechs)
	}
	if err := c.Auth(sasl.NewPlainClient("", "alice", "s3cret")); err == nil {
		t.Error("PLAIN accepted though not offered")
	}
	if err := c.Auth(sasl.NewLoginClient("alice", "s3cret")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("a@example.com", []string{"b@example.net"}, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	msgs, err := s.WaitMessages(waitCtx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	if m := msgs[0]; m.AuthMech != "LOGIN" || m.AuthUser != "alice" {
		t.Errorf("AuthMech %q, AuthUser %q", m.AuthMech, m.AuthUser)
	}
}
