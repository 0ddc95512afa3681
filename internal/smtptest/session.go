package smtptest

import (
	"crypto/tls"
	"io"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
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
	return se.s.opts.Users != nil && (se.tls != nil || se.s.opts.Mode == Plain)
}

// AuthMechanisms is what EHLO advertises: nothing unless AUTH is allowed.
func (se *session) AuthMechanisms() []string {
	if !se.authOK() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth counts the attempt, then refuses it without TLS (523) or runs PLAIN
// or LOGIN against Options.Users.
func (se *session) Auth(mech string) (sasl.Server, error) {
	se.s.mu.Lock()
	se.s.nauth++
	se.s.mu.Unlock()
	if se.s.opts.Users == nil {
		return nil, smtp.ErrAuthUnsupported
	}
	if !se.authOK() {
		return nil, errTLSRequired
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return smtp.ErrAuthFailed
			}
			return se.login(user, pass)
		}), nil
	case sasl.Login:
		return &loginServer{check: se.login}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (se *session) login(user, pass string) error {
	want, ok := se.s.opts.Users[user]
	if !ok || want != pass {
		return smtp.ErrAuthFailed
	}
	se.authUser = user
	return nil
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
		TLS:      se.tls,
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

// loginServer is the server side of AUTH LOGIN, which go-sasl lacks
// (DESIGN.md, Library gaps). The challenges are the customary "Username:" and
// "Password:", which go-sasl's LOGIN client expects.
type loginServer struct {
	step  int
	user  string
	check func(user, pass string) error
}

func (l *loginServer) Next(resp []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0: // AUTH LOGIN [initial response = username]
		if resp == nil {
			l.step = 1
			return []byte("Username:"), false, nil
		}
		l.user, l.step = string(resp), 2
		return []byte("Password:"), false, nil
	case 1:
		l.user, l.step = string(resp), 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(l.user, string(resp))
	}
	return nil, false, sasl.ErrUnexpectedClientResponse
}
