package upstream

import (
	"testing"

	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/policy"
)

// TestSetProvidersUsesNewPolicy: after a reload with a new password, the
// next delivery authenticates with it on a new connection; the connection
// parked under the old policy is not reused.
func TestSetProvidersUsesNewPolicy(t *testing.T) {
	s, c := reusing(t, smtptest.StartTLS, 10)
	sendOK(t, c, 1, 2)
	if n := s.Connections(); n != 1 {
		t.Fatalf("%d connections before the reload, want 1 (reuse)", n)
	}
	const rotated = "rotated-password-2"
	s.SetUsers(map[string]string{"alice": rotated})
	old := c.provider("fake")
	p := *old
	p.Auth.Password = policy.Secret(rotated)
	c.SetProviders(map[string]*policy.Provider{"fake": &p})
	sendOK(t, c, 3, 4)
	if n := s.Connections(); n != 2 {
		t.Fatalf("%d connections, want 2: one new after the reload, reused once", n)
	}
	if c.provider("fake") != &p {
		t.Fatal("provider() does not return the reloaded policy")
	}
}
