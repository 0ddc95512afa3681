package policy

import (
	"fmt"
	"net"
)

func (d *decoder) admin(s *section) Admin {
	var a Admin
	s.hostPort("addr", &a.Addr, false)
	s.integer("ready_max_queue", 0, maxInt, &a.ReadyMaxQueue)
	a.Token, a.TokenFrom, _ = d.secret(s, "token_env", "token_file")
	return a
}

// sendmail reads the section for `tlsrelay sendmail`.
func (d *decoder) sendmail(s *section) Sendmail {
	var m Sendmail
	if line, ok := s.str("from", &m.From); ok && !plainAddress(m.From) {
		d.errorf(line, s.sub("from"), "want an address such as app@example.com (the envelope sender of mail submitted with `tlsrelay sendmail`), got %q", m.From)
	}
	return m
}

// exposure warns when admin.addr is reachable from other machines, and
// says what they can reach there.
func (a Admin) exposure() []string {
	if a.Addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(a.Addr)
	if err != nil || isLoopbackHost(host) {
		return nil
	}
	what := "/metrics, /healthz and /readyz (no mail is listed or changed there; the queue API is off without admin.token_env or token_file)"
	if a.Token != "" {
		what = "/metrics, /healthz, /readyz and, to anyone holding the token (" + a.TokenFrom + "), the queue API: " +
			"listing, deleting and requeueing mail; the token travels in clear over plain HTTP, so keep the address on a trusted network"
	}
	return []string{fmt.Sprintf("admin.addr %s is not a loopback address: every host that can reach it gets %s", a.Addr, what)}
}
