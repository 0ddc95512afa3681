// Package saslogin is the server side of SASL LOGIN
// (draft-murchison-sasl-login), which go-sasl lacks (docs/design.md,
// Library gaps): the challenges are the customary "Username:" and
// "Password:", which go-sasl's LOGIN client and legacy apps expect, and an
// initial response is the user name. The relay's inbound AUTH and the fake
// upstreams of internal/mailsink both use it.
package saslogin

import "github.com/emersion/go-sasl"

// NewServer returns a LOGIN server that asks for the user name (unless the
// initial response gave it) and the password, then returns check's error.
func NewServer(check func(user, pass string) error) sasl.Server {
	return &server{check: check}
}

type server struct {
	step  int
	user  string
	check func(user, pass string) error
}

func (l *server) Next(resp []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step = 1
		if resp == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		l.user, l.step = string(resp), 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(l.user, string(resp))
	}
	return nil, false, sasl.ErrUnexpectedClientResponse
}
