package policy

import "time"

// Timeouts bound the waits of one delivery attempt to a provider. Each is a
// whole-reply deadline that bytes arriving slowly cannot extend (a server
// trickling its greeting one byte at a time is cut off at Greeting, not
// kept forever by every byte resetting a per-read deadline). The defaults
// are RFC 5321 4.5.3.2's, except Connect, which RFC 5321 leaves open.
type Timeouts struct {
	Connect  time.Duration // TCP connect and the TLS handshake; default 30s
	Greeting time.Duration // the 220 greeting, whole; default 5m (4.5.3.2.1)
	Command  time.Duration // each command's reply, whole (EHLO, AUTH, MAIL, RCPT, DATA, RSET); default 5m
	DataEnd  time.Duration // the reply to the end of the body; default 10m (4.5.3.2.6)
	// Attempt bounds one whole attempt (connect to the last reply), however
	// the time is spread; default 30m. It frees the worker in all cases.
	Attempt time.Duration
}

// DefaultTimeouts are a provider's timeouts when relay.yaml gives none.
var DefaultTimeouts = Timeouts{
	Connect:  30 * time.Second,
	Greeting: 5 * time.Minute,
	Command:  5 * time.Minute,
	DataEnd:  10 * time.Minute,
	Attempt:  30 * time.Minute,
}

// effectiveTimeouts is providers.*.timeouts for Effective.
type effectiveTimeouts struct {
	Connect  string `yaml:"connect"`
	Greeting string `yaml:"greeting"`
	Command  string `yaml:"command"`
	DataEnd  string `yaml:"data_end"`
	Attempt  string `yaml:"attempt"`
}

func (t Timeouts) effective() effectiveTimeouts {
	return effectiveTimeouts{formatDuration(t.Connect), formatDuration(t.Greeting), formatDuration(t.Command),
		formatDuration(t.DataEnd), formatDuration(t.Attempt)}
}

// timeouts decodes providers.*.timeouts. The attempt deadline must leave room
// for the longest single wait it contains.
func (d *decoder) timeouts(s *section) Timeouts {
	t := DefaultTimeouts
	s.duration("connect", &t.Connect)
	s.duration("greeting", &t.Greeting)
	s.duration("command", &t.Command)
	s.duration("data_end", &t.DataEnd)
	s.duration("attempt", &t.Attempt)
	if longest := max(t.Connect, t.Greeting, t.Command, t.DataEnd); t.Attempt < longest {
		d.errorf(lineOrDefault(d.lineOf(s.sub("attempt")), s.line), s.sub("attempt"),
			"want at least the longest single wait (%s): the attempt deadline would cut that wait short", formatDuration(longest))
	}
	return t
}
