package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/tlsrelay/tlsrelay/policy"
)

// auth authenticates if the provider's policy says so. go-smtp's Auth and
// go-sasl's clients check neither TLS nor what the server offers (G13): both
// are checked here, before the credentials leave. An AUTH rejection is
// temporary (docs/design.md, "Upstream error classes") and logged at error level.
func (d *attempt) auth() error {
	a := d.p.Auth
	if a.Mechanism == "" {
		return nil
	}
	if d.p.TLS.Mode != policy.TLSNone && !d.secure {
		return &Error{Op: "auth", Err: errors.New("refusing to send credentials without verified TLS")}
	}
	mech, err := d.mechanism()
	if err != nil {
		return err
	}
	if mech == mechXOAuth2 {
		return d.authXOAuth2()
	}
	var client sasl.Client
	if mech == sasl.Login {
		client = sasl.NewLoginClient(a.Username, a.Password.Reveal())
	} else {
		client = sasl.NewPlainClient("", a.Username, a.Password.Reveal())
	}
	d.conn.expect("reply to AUTH", d.t.Command) // each step's
	if err := d.smtp.check(d.sc.Auth(client)); err != nil {
		return d.authFailed(mech, err, a.PasswordFrom, "")
	}
	d.log.Debug("upstream authenticated", "mechanism", mech)
	return nil
}

// mechanism returns the SASL mechanism to use: the configured one if the
// server offers it, or for auto the first of XOAUTH2 (with auth.oauth2),
// PLAIN, LOGIN (with a password) that the server offers. XOAUTH2 comes first
// because a short-lived, scoped token is worth less to a thief than the
// password; PLAIN before LOGIN because it is the standard (RFC 4616) and
// takes one round trip, where LOGIN is an undocumented draft with two. Both
// send the password as it is, which is why TLS is verified first. Other
// mechanisms (CRAM-MD5 ...) are never used.
func (d *attempt) mechanism() (string, error) {
	a := d.p.Auth
	var allowed []string
	if a.Mechanism == "auto" {
		if a.OAuth2 != nil {
			allowed = append(allowed, mechXOAuth2)
		}
		if a.Password != "" {
			allowed = append(allowed, sasl.Plain, sasl.Login)
		}
	} else {
		allowed = []string{strings.ToUpper(a.Mechanism)}
	}
	ok, list := d.sc.Extension("AUTH")
	offered := strings.Fields(strings.ToUpper(list))
	for _, m := range allowed {
		if slices.Contains(offered, m) {
			return m, nil
		}
	}
	desc := "no AUTH"
	if ok {
		desc = "AUTH " + list
	}
	if a.Mechanism == "auto" {
		return "", &Error{Op: "auth", Err: fmt.Errorf("provider %s offers %s, none of %s that its credentials allow (auth.mechanism auto)",
			d.name, desc, strings.Join(allowed, ", "))}
	}
	return "", &Error{Op: "auth", Err: fmt.Errorf("provider %s does not offer AUTH %s; it offers %s", d.name, allowed[0], desc)}
}

// authXOAuth2 authenticates with an access token. A token the server refuses
// (535) is replaced once by a new one from the token endpoint, and AUTH is
// tried again on the same connection: after a 5xx reply to AUTH the session
// is in step and may try AUTH again (RFC 4954 4), so a second dial and TLS
// handshake would add nothing. A server that closed the connection instead
// makes a temporary error, and the next attempt uses the new token.
func (d *attempt) authXOAuth2() error {
	a := d.p.Auth
	if strings.ContainsAny(a.Username, "\x00\x01") {
		return configErr("provider %s: the username holds a control character that XOAUTH2 cannot carry", d.name)
	}
	ts := d.c.tokens.get(d.name, a.OAuth2)
	refused := ""
	for try := 0; ; try++ {
		tok, err := d.accessToken(ts, refused)
		if err != nil {
			return err
		}
		client := &xoauth2Client{user: a.Username, token: tok}
		d.conn.expect("reply to AUTH", d.t.Command) // each step's
		err = d.smtp.check(d.sc.Auth(client))
		if err == nil {
			d.log.Debug("upstream authenticated", "mechanism", mechXOAuth2, "token_refreshed", try > 0)
			return nil
		}
		var se *smtp.SMTPError
		if try > 0 || !errors.As(err, &se) || se.Code != 535 {
			return d.authFailed(mechXOAuth2, err, "oauth2 token from "+tokenHost(a.OAuth2), client.serverErr)
		}
		d.log.Warn("access token refused; getting a new one and trying AUTH again", "mechanism", mechXOAuth2,
			"username", a.Username, "code", se.Code, "server_error", client.serverErr)
		refused = tok
	}
}

// accessToken returns an access token from ts, bounded by tokenTimeout (and
// the attempt's deadline).
func (d *attempt) accessToken(ts *tokenSource, refused string) (string, error) {
	ctx, cancel := context.WithTimeout(d.ctx, d.c.capped(tokenTimeout))
	defer cancel()
	hc := d.c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	now := time.Now
	if d.c.Now != nil {
		now = d.c.Now
	}
	tok, err := ts.token(ctx, hc, now(), refused)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Op: "auth", Err: fmt.Errorf("waiting for an OAuth2 access token from %s: %w", tokenHost(ts.o), err)}
		}
		d.log.Error("oauth2 token refresh failed", "token_host", tokenHost(ts.o), "flow", ts.o.Flow, "error", e.Err)
		return "", e
	}
	return tok.AccessToken, nil
}

// authFailed logs a refused AUTH loudly and returns it as a temporary error.
// from says where the credential came from, never what it is.
func (d *attempt) authFailed(mech string, err error, from, serverErr string) error {
	// Temporary even for 535: a rotated password must not dead-letter the
	// queue (docs/design.md, "Upstream error classes").
	e := setupErr("auth", err)
	args := []any{"mechanism", mech, "username", d.p.Auth.Username, "credentials_from", from, "code", e.Code, "error", cleanText(err.Error())}
	if serverErr != "" {
		args = append(args, "server_error", serverErr)
	}
	d.log.Error("auth failed", args...)
	return e
}

// tokenHost is the host of the token endpoint, for logs and errors.
func tokenHost(o *policy.OAuth2) string {
	if i := strings.Index(o.TokenURL, "://"); i >= 0 {
		host, _, _ := strings.Cut(o.TokenURL[i+3:], "/")
		return host
	}
	return o.TokenURL
}
