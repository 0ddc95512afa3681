package upstream

// XOAUTH2: the SASL client (go-sasl has none, docs/design.md "Library gaps") and the
// access tokens it sends, from the provider's OAuth2 token endpoint through
// golang.org/x/oauth2, cached per provider.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/tlsrelay/tlsrelay/policy"
)

const mechXOAuth2 = "XOAUTH2"

// xoauth2Client is the client side of SASL XOAUTH2, as Google and Microsoft
// define it (https://developers.google.com/gmail/imap/xoauth2-protocol):
// one initial response, base64 of
//
//	"user=" user "\x01auth=Bearer " token "\x01\x01"
//
// On failure the server sends a 334 challenge holding a JSON error
// ({"status":"401","schemes":"bearer","scope":"..."}); the client must answer
// it with an empty line, and the server then replies 5xx (535 5.7.8 at Gmail).
type xoauth2Client struct {
	user, token string
	serverErr   string // the JSON error of a 334 challenge, for the log
}

// maxServerErr bounds the JSON error kept for the log.
const maxServerErr = 512

func (c *xoauth2Client) Start() (string, []byte, error) {
	return mechXOAuth2, []byte("user=" + c.user + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

// Next answers the error challenge with an empty response. A second
// challenge is a protocol error: go-smtp then cancels the exchange ("*").
func (c *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	if c.serverErr != "" {
		return nil, errors.New("xoauth2: unexpected second challenge from the server")
	}
	c.serverErr = printable(challenge, maxServerErr)
	if c.serverErr == "" {
		c.serverErr = "(empty challenge)"
	}
	return []byte{}, nil // not nil: go-smtp sends an empty line for it
}

// printable returns b as text without control characters, cut at max bytes.
func printable(b []byte, max int) string {
	if len(b) > max {
		b = b[:max]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, string(b))
}

// earlyRefresh: a cached access token is replaced this long before it
// expires. golang.org/x/oauth2's ReuseTokenSource uses 10 seconds
// (defaultExpiryDelta), meant for an HTTP request sent at once; here the
// token is sent after a dial, a TLS handshake and EHLO, each allowed up to
// Client.Timeout, and the provider's clock may differ from ours. A minute
// covers that; tokens live an hour at Google and Microsoft. ReuseTokenSource
// itself is not used: its clock cannot be injected, and it has no way to drop
// a token the server refused.
const earlyRefresh = time.Minute

// tokenCaches holds one tokenSource per provider, made on first use.
type tokenCaches struct {
	mu sync.Mutex
	m  map[string]*tokenSource
}

// get returns the cache for provider name, whose OAuth2 policy is o.
func (tc *tokenCaches) get(name string, o *policy.OAuth2) *tokenSource {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if ts := tc.m[name]; ts != nil && ts.o == o {
		return ts
	}
	if tc.m == nil {
		tc.m = map[string]*tokenSource{}
	}
	ts := &tokenSource{o: o, refresh: o.RefreshToken.Reveal(), sem: make(chan struct{}, 1)}
	tc.m[name] = ts
	return ts
}

// tokenSource caches one provider's access token. Deliveries to the provider
// share it; one of them at a time fetches a new token, the others wait for it
// (or for their ctx).
type tokenSource struct {
	o   *policy.OAuth2
	sem chan struct{} // held while reading or fetching tok

	tok     *oauth2.Token
	refresh string // the refresh token now: a rotated one replaces the configured one
}

// token returns a valid access token: the cached one, unless it expires
// within earlyRefresh of now or is refused (the token a server refused, ""
// for none), else a new one from the token endpoint. A refused token that
// another delivery has replaced already is not fetched again.
func (ts *tokenSource) token(ctx context.Context, hc *http.Client, now time.Time, refused string) (*oauth2.Token, error) {
	select {
	case ts.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-ts.sem }()
	if t := ts.tok; t != nil && t.AccessToken != refused && (t.Expiry.IsZero() || now.Add(earlyRefresh).Before(t.Expiry)) {
		return t, nil
	}
	t, err := ts.fetch(ctx, hc)
	if err != nil {
		return nil, err
	}
	if t.RefreshToken != "" {
		ts.refresh = t.RefreshToken
	}
	ts.tok = t
	return t, nil
}

// fetch asks the token endpoint for a new access token, by the configured
// flow. It never caches: token does.
func (ts *tokenSource) fetch(ctx context.Context, hc *http.Client) (*oauth2.Token, error) {
	o := ts.o
	ctx = context.WithValue(ctx, oauth2.HTTPClient, hc)
	var t *oauth2.Token
	var err error
	if o.Flow == policy.FlowClientCredentials {
		cc := clientcredentials.Config{ClientID: o.ClientID, ClientSecret: o.ClientSecret.Reveal(), TokenURL: o.TokenURL, Scopes: o.Scopes}
		t, err = cc.Token(ctx)
	} else {
		// An empty access token makes the source refresh at once; the
		// returned token carries the refresh token, rotated or not.
		conf := oauth2.Config{ClientID: o.ClientID, ClientSecret: o.ClientSecret.Reveal(), Endpoint: oauth2.Endpoint{TokenURL: o.TokenURL}}
		t, err = conf.TokenSource(ctx, &oauth2.Token{RefreshToken: ts.refresh}).Token()
	}
	if err == nil && t.AccessToken == "" {
		err = errors.New("the response has no access_token")
	}
	if err != nil {
		return nil, ts.tokenErr(err)
	}
	return t, nil
}

// tokenErr is a failed token fetch: temporary (the mail stays queued), naming
// the token endpoint's host and what it said, never a secret.
func (ts *tokenSource) tokenErr(err error) *Error {
	host := tokenHost(ts.o)
	var detail string
	var re *oauth2.RetrieveError
	var ue *url.Error
	switch {
	case errors.As(err, &re):
		detail = "refused"
		if re.Response != nil {
			detail = "HTTP " + re.Response.Status
		}
		if re.ErrorCode != "" {
			detail += ": " + re.ErrorCode
		}
		if re.ErrorDescription != "" {
			detail += ": " + re.ErrorDescription
		}
		if re.ErrorCode == "invalid_grant" || re.ErrorCode == "invalid_client" || re.ErrorCode == "unauthorized_client" {
			detail += " (check the client ID, client secret and refresh token, or make new ones)"
		}
	case errors.As(err, &ue):
		detail = ue.Err.Error() // without the URL, named by host already
	default:
		detail = err.Error()
	}
	for _, s := range []string{ts.o.ClientSecret.Reveal(), ts.o.RefreshToken.Reveal(), ts.refresh} {
		if s != "" {
			detail = strings.ReplaceAll(detail, s, "[redacted]")
		}
	}
	return &Error{Op: "auth", Err: fmt.Errorf("cannot get an OAuth2 access token from %s: %s", host, printable([]byte(detail), 1024))}
}
