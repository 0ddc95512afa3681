package saslogin

import (
	"errors"
	"testing"

	"github.com/emersion/go-sasl"
)

func TestLogin(t *testing.T) {
	bad := errors.New("bad password")
	check := func(user, pass string) error {
		if user == "alice" && pass == "secret" {
			return nil
		}
		return bad
	}
	type step struct {
		resp      []byte
		challenge string
		done      bool
		err       error
	}
	for name, steps := range map[string][]step{
		"no initial response": {{nil, "Username:", false, nil}, {[]byte("alice"), "Password:", false, nil}, {[]byte("secret"), "", true, nil}},
		"initial response":    {{[]byte("alice"), "Password:", false, nil}, {[]byte("secret"), "", true, nil}},
		"wrong password":      {{[]byte("alice"), "Password:", false, nil}, {[]byte("guess"), "", true, bad}},
		"a step too many": {{[]byte("alice"), "Password:", false, nil}, {[]byte("secret"), "", true, nil},
			{[]byte("more"), "", false, sasl.ErrUnexpectedClientResponse}},
	} {
		s := NewServer(check)
		for i, st := range steps {
			ch, done, err := s.Next(st.resp)
			if string(ch) != st.challenge || done != st.done || !errors.Is(err, st.err) {
				t.Errorf("%s, step %d: Next(%q) = %q, %v, %v; want %q, %v, %v",
					name, i, st.resp, ch, done, err, st.challenge, st.done, st.err)
			}
		}
	}
}
