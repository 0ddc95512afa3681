package mailsink

import (
	"bytes"
	"crypto/tls"
	"io"
	"slices"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/tlsrelay/tlsrelay/internal/saslogin"
)

var (
	errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	errTLSRequired  = &smtp.SMTPError{Code: 523, EnhancedCode: smtp.EnhancedCode{5, 7, 10}, Message: "TLS is required"}
)

// session is one go-smtp session. go-smtp makes a new one at the EHLO after
// STARTTLS, so tls is fixed for the session's lifetime.
type session struct {
	s        *Server
	tls      *tls.ConnectionState
	authUser string
	authMech string
	from     string
	to       []string
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	sess := &session{s: s}
	if st, ok := c.TLSConnectionState(); ok {
		sess.tls = &st
	}
	return sess, nil
}

// authOK says whether AUTH is allowed on this session: over TLS, or in Plain
// mode. go-smtp's AllowInsecureAuth is on so that every AUTH command reaches
// Auth and is counted (a client that leaks credentials in plaintext must be
// seen); this is where the TLS requirement is enforced instead.
func (se *session) authOK() bool {
	o := se.s.opts
	return (o.Users != nil || o.Tokens != nil) && (se.tls != nil || o.Mode == Plain)
}

// offered returns the mechanisms the server has credentials for, limited to
// Options.AuthMechanisms when that is set.
func (se *session) offered() []string {
	o := se.s.opts
	var mechs []string
	if o.Users != nil {
		mechs = append(mechs, sasl.Plain, sasl.Login)
	}
	if o.Tokens != nil {
		mechs = append(mechs, mechXOAuth2)
	}
	if o.AuthMechanisms != nil {
		mechs = slices.DeleteFunc(mechs, func(m string) bool { return !slices.Contains(o.AuthMechanisms, m) })
	}
	return mechs
}

// AuthMechanisms is what EHLO advertises: nothing unless AUTH is allowed.
func (se *session) AuthMechanisms() []string {
	if !se.authOK() {
		return nil
	}
	return se.offered()
}

// Auth counts the attempt, then refuses it without TLS (523) or runs PLAIN
// or LOGIN against Options.Users, or XOAUTH2 against Options.Tokens.
func (se *session) Auth(mech string) (sasl.Server, error) {
	se.s.mu.Lock()
	se.s.nauth++
	se.s.mu.Unlock()
	if se.s.opts.Users == nil && se.s.opts.Tokens == nil {
		return nil, smtp.ErrAuthUnsupported
	}
	if !se.authOK() {
		return nil, errTLSRequired
	}
	if !slices.Contains(se.offered(), mech) {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return smtp.ErrAuthFailed
			}
			return se.login(sasl.Plain, user, pass)
		}), nil
	case sasl.Login:
		return saslogin.NewServer(func(user, pass string) error { return se.login(sasl.Login, user, pass) }), nil
	case mechXOAuth2:
		return &xoauth2Server{check: se.bearer}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (se *session) login(mech, user, pass string) error {
	se.s.mu.Lock()
	want, ok := se.s.opts.Users[user]
	se.s.mu.Unlock()
	if !ok || want != pass {
		return smtp.ErrAuthFailed
	}
	se.authUser, se.authMech = user, mech
	return nil
}

// bearer checks an XOAUTH2 token with Options.Tokens.
func (se *session) bearer(user, token string) bool {
	if !se.s.opts.Tokens(user, token) {
		return false
	}
	se.authUser, se.authMech = user, mechXOAuth2
	return true
}

func (se *session) Mail(from string, _ *smtp.MailOptions) error {
	se.s.mu.Lock()
	se.s.nmail++
	se.s.mu.Unlock()
	if se.s.opts.AuthRequired && se.authUser == "" {
		return errAuthRequired
	}
	if h := se.s.currentHooks().mail; h != nil {
		if err := h(from); err != nil {
			return err
		}
	}
	se.from = from
	return nil
}

func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if h := se.s.currentHooks().rcpt; h != nil {
		if err := h(to); err != nil {
			return err
		}
	}
	se.to = append(se.to, to)
	return nil
}

func (se *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r) // bounded by the server's MaxMessageBytes
	if err != nil {
		return err
	}
	m := Message{
		From:     se.from,
		To:       append([]string(nil), se.to...),
		Data:     data,
		AuthUser: se.authUser,
		AuthMech: se.authMech,
		TLS:      se.tls,
		Received: time.Now(),
	}
	if h := se.s.currentHooks().data; h != nil {
		if err := h(&m); err != nil {
			return err
		}
	}
	se.s.record(m)
	return nil
}

func (se *session) Reset() {
	se.from = ""
	se.to = nil
}

func (se *session) Logout() error { return nil }

const mechXOAuth2 = "XOAUTH2"

// xoauth2Error is the challenge a refused XOAUTH2 token gets, as at Gmail
// (https://developers.google.com/gmail/imap/xoauth2-protocol).
const xoauth2Error = `{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`

// xoauth2Server is the server side of SASL XOAUTH2: the initial response
// "user=U\x01auth=Bearer T\x01\x01"; a refused token gets the JSON error
// challenge, and the client's (empty) answer gets 535 5.7.8.
type xoauth2Server struct {
	step  int
	check func(user, token string) bool
}

func (x *xoauth2Server) Next(resp []byte) (challenge []byte, done bool, err error) {
	switch x.step {
	case 0:
		if resp == nil { // no initial response: ask for it
			x.step = 1
			return []byte{}, false, nil
		}
		fallthrough
	case 1:
		x.step = 2
		user, token, ok := parseXOAuth2(resp)
		if !ok {
			return nil, true, smtp.ErrAuthFailed
		}
		if x.check(user, token) {
			return nil, true, nil
		}
		return []byte(xoauth2Error), false, nil
	case 2:
		x.step = 3
		return nil, true, smtp.ErrAuthFailed
	}
	return nil, false, sasl.ErrUnexpectedClientResponse
}

// parseXOAuth2 splits "user=U\x01auth=Bearer T\x01\x01".
func parseXOAuth2(resp []byte) (user, token string, ok bool) {
	rest, found := bytes.CutSuffix(resp, []byte("\x01\x01"))
	if !found {
		return "", "", false
	}
	u, a, found := bytes.Cut(rest, []byte("\x01"))
	if !found || !bytes.HasPrefix(u, []byte("user=")) || !bytes.HasPrefix(a, []byte("auth=Bearer ")) {
		return "", "", false
	}
	return string(u[len("user="):]), string(a[len("auth=Bearer "):]), true
}
