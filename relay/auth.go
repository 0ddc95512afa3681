package relay

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/tlsrelay/tlsrelay/internal/saslogin"
	"github.com/tlsrelay/tlsrelay/policy"
)

// Inbound AUTH (listen.users): PLAIN (go-sasl's server) and LOGIN (ours,
// below: go-sasl has none). go-smtp's own rules are not used for the reply
// codes (security.md a3): it has 502 for "authenticate first" and 523 for
// "TLS required", where RFC 4954 has 530 5.7.0 and 538 5.7.11. Server sets
// AllowInsecureAuth, so every AUTH reaches these methods, which decide.
//
// Guard (G14): nothing here logs or returns a password or an AUTH line;
// go-smtp's Debug stays off. A failed login logs the user name only when it
// is a configured user (a password typed into the user field stays out).

const (
	authFailuresPerConn = 3                // then 421 4.7.0 and close
	authFailuresPerIP   = 10               // within loginWindow: then AUTH is refused at once
	loginWindow         = 15 * time.Minute // failures older than this are forgotten
	loginBaseDelay      = 250 * time.Millisecond
	loginMaxDelay       = 8 * time.Second
	maxLoginRecords     = 4096 // prune expired records beyond this many addresses
)

var _ smtp.AuthSession = (*session)(nil)

// AuthMechanisms is what EHLO advertises: PLAIN and LOGIN with listen.users,
// when AUTH is allowed on this connection and not done yet.
func (s *session) AuthMechanisms() []string {
	if s.srv.users == nil || !s.authAllowed() || s.conn.authed.Load() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// authAllowed: plaintext AUTH only from a loopback client, else after STARTTLS.
func (s *session) authAllowed() bool {
	return s.conn.ip.IsLoopback() || s.conn.isTLS()
}

// Auth starts an AUTH exchange for mech.
func (s *session) Auth(mech string) (sasl.Server, error) {
	var err error
	switch {
	case s.conn.closed():
		err = errSessionOver
	case s.srv.users == nil:
		err = errAuthNotOffered
	case !s.authAllowed():
		err = errAuthNeedsTLS
	case s.srv.logins.blocked(s.conn.ip):
		err = errTooManyFailures
	}
	if err != nil {
		return nil, s.reject(err)
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return s.loginFailed(false, user) // acting for someone else is not offered
			}
			return s.login(user, pass)
		}), nil
	case sasl.Login:
		return saslogin.NewServer(s.login), nil
	}
	return nil, s.reject(wrapErr(errAuthMechanism, "mechanism not offered"))
}

// login checks one user name and password. A failure waits a delay that
// grows with the failures from the client's address, then answers 535
// 5.7.8; the third on a connection ends it with 421 4.7.0.
func (s *session) login(user, pass string) error {
	if s.conn.closed() {
		return s.reject(errSessionOver)
	}
	known, ok := s.srv.users.verify(user, pass)
	if ok {
		s.conn.authed.Store(true)
		s.srv.logins.success(s.conn.ip)
		s.srv.log.Info("auth", "user", user, "client", s.conn.client)
		return nil
	}
	return s.loginFailed(known, user)
}

// loginFailed waits, counts the failure and returns its reply.
func (s *session) loginFailed(known bool, user string) error {
	s.srv.sleep(s.srv.logins.fail(s.conn.ip, time.Now()))
	s.authFailures++
	who := "unknown user"
	if known {
		who = "user " + user
	}
	if s.authFailures >= authFailuresPerConn {
		return s.reject(wrapErr(errTooManyFailures, who))
	}
	return s.reject(wrapErr(errAuthFailed, who))
}

// userTable holds listen.users for verify.
type userTable struct {
	users []policy.User
	dummy []byte // a bcrypt hash checked for unknown users, so they take as long
}

// newUserTable returns nil without users.
func newUserTable(users []policy.User) (*userTable, error) {
	if len(users) == 0 {
		return nil, nil
	}
	t := &userTable{users: users}
	cost := 0
	for _, u := range users {
		if c, err := bcrypt.Cost([]byte(u.BcryptHash)); err == nil && c > cost {
			cost = c
		}
	}
	if cost > 0 {
		h, err := bcrypt.GenerateFromPassword([]byte("tlsrelay dummy"), cost)
		if err != nil {
			return nil, err
		}
		t.dummy = h
	}
	return t, nil
}

// verify checks user and pass in constant time (crypto/subtle over SHA-256
// for passwords, bcrypt for hashes). known reports a configured user name.
func (t *userTable) verify(user, pass string) (known, ok bool) {
	var match *policy.User
	for i := range t.users {
		if subtle.ConstantTimeCompare([]byte(t.users[i].Username), []byte(user)) == 1 {
			match = &t.users[i]
		}
	}
	switch {
	case match == nil && t.dummy != nil:
		bcrypt.CompareHashAndPassword(t.dummy, []byte(pass))
		return false, false
	case match == nil:
		sameSecret("", pass)
		return false, false
	case match.BcryptHash != "":
		return true, bcrypt.CompareHashAndPassword([]byte(match.BcryptHash), []byte(pass)) == nil
	}
	return true, sameSecret(match.Password.Reveal(), pass)
}

// sameSecret compares in time that depends on neither value.
func sameSecret(want, got string) bool {
	a, b := sha256.Sum256([]byte(want)), sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1 && want != ""
}

// loginLimiter counts failed logins per client address.
type loginLimiter struct {
	mu sync.Mutex
	m  map[netip.Addr]*loginRecord
}

type loginRecord struct {
	fails int
	last  time.Time
}

func newLoginLimiter() *loginLimiter { return &loginLimiter{m: map[netip.Addr]*loginRecord{}} }

// fail records a failure at now and returns how long to wait before the
// reply: loginBaseDelay, doubled with each failure in loginWindow, at most
// loginMaxDelay.
func (l *loginLimiter) fail(ip netip.Addr, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.m[ip]
	if r == nil || now.Sub(r.last) > loginWindow {
		if len(l.m) >= maxLoginRecords {
			l.prune(now)
		}
		r = &loginRecord{}
		l.m[ip] = r
	}
	r.fails++
	r.last = now
	d := loginBaseDelay << min(r.fails-1, 16)
	return min(d, loginMaxDelay)
}

// blocked reports whether ip has had authFailuresPerIP failures in loginWindow.
func (l *loginLimiter) blocked(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.m[ip]
	return r != nil && r.fails >= authFailuresPerIP && time.Since(r.last) <= loginWindow
}

// success forgets ip's failures.
func (l *loginLimiter) success(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, ip)
}

func (l *loginLimiter) prune(now time.Time) {
	for ip, r := range l.m {
		if now.Sub(r.last) > loginWindow {
			delete(l.m, ip)
		}
	}
}
