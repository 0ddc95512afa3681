package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsrelay/tlsrelay/delivery"
	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/policy"
)

// The OAuth2 secrets of these tests; none may appear in a log or an error.
const (
	clientSecret = "client-s3cret-value"
	refreshToken = "refresh-s3cret-value"
)

// tokenEndpoint is a fake OAuth2 token endpoint (RFC 6749 5.1) that issues
// access tokens "tok-1", "tok-2" ... expiring after expiresIn seconds, and
// can rotate the refresh token or fail.
type tokenEndpoint struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	hits      int
	refresh   string // the refresh token it accepts
	rotate    bool   // answer each refresh with a new refresh token
	expiresIn int
	status    int    // non-zero: fail with this status
	errorDesc string // error_description when failing
	issued    map[string]bool
	grants    []string // grant_type of each successful request
	scopes    []string // scope of each successful request
}

func newTokenEndpoint(t *testing.T) *tokenEndpoint {
	ep := &tokenEndpoint{t: t, refresh: refreshToken, expiresIn: 3600, issued: map[string]bool{}}
	ep.srv = httptest.NewTLSServer(http.HandlerFunc(ep.serve))
	t.Cleanup(ep.srv.Close)
	return ep
}

func (ep *tokenEndpoint) url() string { return ep.srv.URL + "/token" }

func (ep *tokenEndpoint) serve(w http.ResponseWriter, r *http.Request) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	ep.hits++
	if err := r.ParseForm(); err != nil || r.URL.Path != "/token" || r.Method != http.MethodPost {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	id, secret, basic := r.BasicAuth()
	if basic { // golang.org/x/oauth2 escapes them (RFC 6749 2.3.1)
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	grant := r.PostForm.Get("grant_type")
	ok := id == "client-id" && secret == clientSecret &&
		(grant == "client_credentials" || grant == "refresh_token" && r.PostForm.Get("refresh_token") == ep.refresh)
	if ep.status != 0 || !ok {
		status := ep.status
		if status == 0 {
			status = http.StatusBadRequest
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant", "error_description": ep.errorDesc})
		return
	}
	tok := fmt.Sprintf("tok-%d", len(ep.issued)+1)
	ep.issued[tok] = true
	ep.grants = append(ep.grants, grant)
	ep.scopes = append(ep.scopes, r.PostForm.Get("scope"))
	resp := map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": ep.expiresIn}
	if ep.rotate && grant == "refresh_token" {
		ep.refresh = fmt.Sprintf("refresh-rotated-%d", len(ep.issued))
		resp["refresh_token"] = ep.refresh
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

func (ep *tokenEndpoint) hitCount() int {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return ep.hits
}

// valid reports whether tok was issued and is not in revoked.
func (ep *tokenEndpoint) valid(revoked ...string) func(user, tok string) bool {
	return func(user, tok string) bool {
		ep.mu.Lock()
		defer ep.mu.Unlock()
		return user == "alice@example.com" && ep.issued[tok] && !slices.Contains(revoked, tok)
	}
}

// oauthProvider is a provider for s that authenticates with tokens from ep.
func oauthProvider(s *smtptest.Server, ep *tokenEndpoint, mech string) *policy.Provider {
	return &policy.Provider{
		Name: "fake", Host: s.Host(), Port: s.Port(),
		TLS: policy.TLS{Mode: policy.TLSImplicit, RootCAs: s.RootCAs()},
		Auth: policy.Auth{Mechanism: mech, Username: "alice@example.com", UsernameFrom: "username",
			OAuth2: &policy.OAuth2{Flow: policy.FlowRefreshToken, TokenURL: ep.url(), ClientID: "client-id", ClientIDFrom: "client_id",
				ClientSecret: clientSecret, ClientSecretFrom: "env CLIENT_SECRET", RefreshToken: refreshToken, RefreshTokenFrom: "env REFRESH_TOKEN"}},
	}
}

// fakeClock is Client.Now for tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// oauthClient is newClient for an OAuth2 provider: it trusts ep, runs on
// clock, and checks that no OAuth2 secret reaches the log.
func oauthClient(t *testing.T, p *policy.Provider, ep *tokenEndpoint) (*Client, *smtptest.LogBuffer, *fakeClock) {
	t.Helper()
	c, logs := newClient(t, p)
	c.HTTPClient = ep.srv.Client()
	clock := &fakeClock{t: time.Now()}
	c.Now = clock.Now
	t.Cleanup(func() { noSecrets(t, "log", logs.String()) })
	return c, logs, clock
}

func noSecrets(t *testing.T, where, s string) {
	t.Helper()
	for _, secret := range []string{clientSecret, refreshToken, password, "refresh-rotated-"} {
		if strings.Contains(s, secret) {
			t.Errorf("a secret (%s) is in the %s:\n%s", secret, where, s)
		}
	}
}

// deliverOK delivers one message and fails the test unless it was accepted.
func deliverOK(t *testing.T, c *Client) {
	t.Helper()
	if r := deliver(t, c, "b@example.net")[0]; r.Err != nil {
		t.Fatalf("delivery failed: %v", r.Err)
	}
}

func TestAuthAutoPicks(t *testing.T) {
	cases := []struct {
		name    string
		offered []string // nil: all the server has credentials for
		creds   string   // "password", "oauth2" or "both"
		want    string   // mechanism used, "" for an error
	}{
		{"both/all", nil, "both", "XOAUTH2"},
		{"both/no-xoauth2", []string{"PLAIN", "LOGIN"}, "both", "PLAIN"},
		{"password/all", nil, "password", "PLAIN"},
		{"password/login-only", []string{"LOGIN"}, "password", "LOGIN"},
		{"both/login-only", []string{"LOGIN"}, "both", "LOGIN"},
		{"oauth2/all", nil, "oauth2", "XOAUTH2"},
		{"password/xoauth2-only", []string{"XOAUTH2"}, "password", ""},
		{"oauth2/plain-login", []string{"PLAIN", "LOGIN"}, "oauth2", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ep := newTokenEndpoint(t)
			s := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, AuthRequired: true, AuthMechanisms: tc.offered,
				Users: map[string]string{"alice@example.com": password}, Tokens: ep.valid()})
			p := oauthProvider(s, ep, "auto")
			if tc.creds != "oauth2" {
				p.Auth.Password, p.Auth.PasswordFrom = password, "env PASSWORD"
			}
			if tc.creds == "password" {
				p.Auth.OAuth2 = nil
			}
			c, _, _ := oauthClient(t, p, ep)
			r := deliver(t, c, "b@example.net")[0]
			if tc.want == "" {
				e := wantErr(t, r, "auth", 0, true)
				if !strings.Contains(e.Error(), "that its credentials allow (auth.mechanism auto)") {
					t.Errorf("error text: %v", e)
				}
				if s.AuthAttempts() != 0 || ep.hitCount() != 0 {
					t.Errorf("%d AUTH, %d token requests; want none", s.AuthAttempts(), ep.hitCount())
				}
				return
			}
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			if m := waitOne(t, s); m.AuthMech != tc.want || m.AuthUser != "alice@example.com" {
				t.Errorf("AUTH %s as %q, want %s", m.AuthMech, m.AuthUser, tc.want)
			}
			if wantHits := map[bool]int{true: 1, false: 0}[tc.want == "XOAUTH2"]; ep.hitCount() != wantHits {
				t.Errorf("%d token requests, want %d", ep.hitCount(), wantHits)
			}
		})
	}
}

// TestXOAuth2TokenCached: the token from the endpoint is used for AUTH and
// kept for the next deliveries, including concurrent ones: one request.
func TestXOAuth2TokenCached(t *testing.T) {
	ep := newTokenEndpoint(t)
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, AuthRequired: true, Tokens: ep.valid()})
	c, _, _ := oauthClient(t, oauthProvider(s, ep, "xoauth2"), ep)
	deliverOK(t, c)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			msg := &delivery.Message{ID: "m", From: "app@example.com", Size: int64(len(body)), Body: strings.NewReader(body)}
			if r := c.Deliver(ctx, "fake", msg, []string{"b@example.net"}); r[0].Err != nil {
				t.Errorf("concurrent delivery: %v", r[0].Err)
			}
		}()
	}
	wg.Wait()
	if n := ep.hitCount(); n != 1 {
		t.Errorf("token endpoint hit %d times, want 1", n)
	}
	for _, m := range s.Messages() {
		if m.AuthMech != "XOAUTH2" || m.AuthUser != "alice@example.com" {
			t.Errorf("AUTH %s as %q", m.AuthMech, m.AuthUser)
		}
	}
	if len(s.Messages()) != 5 {
		t.Errorf("%d messages, want 5", len(s.Messages()))
	}
}

// TestXOAuth2TokenExpiry: a token is replaced once it is within a minute of
// its expiry, not before; a rotated refresh token is used from then on.
func TestXOAuth2TokenExpiry(t *testing.T) {
	ep := newTokenEndpoint(t)
	ep.rotate = true
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, AuthRequired: true, Tokens: ep.valid()})
	c, _, clock := oauthClient(t, oauthProvider(s, ep, "xoauth2"), ep)
	deliverOK(t, c)
	clock.Advance(3600*time.Second - earlyRefresh - 5*time.Second) // still good
	deliverOK(t, c)
	if n := ep.hitCount(); n != 1 {
		t.Fatalf("token endpoint hit %d times before expiry, want 1", n)
	}
	clock.Advance(10 * time.Second) // within a minute of expiry
	deliverOK(t, c)
	clock.Advance(2 * time.Hour) // long expired, with the rotated refresh token
	deliverOK(t, c)
	if n := ep.hitCount(); n != 3 {
		t.Errorf("token endpoint hit %d times, want 3", n)
	}
}

// TestXOAuth2RefusedTokenRefreshed: the server refuses a token that is not
// expired (revoked); the client gets a new one and retries AUTH once, on the
// same connection.
func TestXOAuth2RefusedTokenRefreshed(t *testing.T) {
	ep := newTokenEndpoint(t)
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.StartTLS, AuthRequired: true, Tokens: ep.valid("tok-1")})
	p := oauthProvider(s, ep, "xoauth2")
	p.TLS.Mode = policy.TLSStartTLS
	c, logs, _ := oauthClient(t, p, ep)
	deliverOK(t, c)
	if h, a, n := ep.hitCount(), s.AuthAttempts(), s.Connections(); h != 2 || a != 2 || n != 1 {
		t.Errorf("%d token requests, %d AUTH, %d connections; want 2, 2, 1", h, a, n)
	}
	if !strings.Contains(logs.String(), "access token refused") || !strings.Contains(logs.String(), `\"status\":\"401\"`) {
		t.Errorf("no warning with the server's error:\n%s", logs)
	}
	deliverOK(t, c) // the new token is cached
	if h := ep.hitCount(); h != 2 {
		t.Errorf("%d token requests after a second delivery, want 2", h)
	}
}

// TestXOAuth2RefusedTwice: a second refusal is a temporary AUTH error, with
// no third token request and no third AUTH.
func TestXOAuth2RefusedTwice(t *testing.T) {
	ep := newTokenEndpoint(t)
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, AuthRequired: true,
		Tokens: func(string, string) bool { return false }})
	c, logs, _ := oauthClient(t, oauthProvider(s, ep, "xoauth2"), ep)
	wantErr(t, deliver(t, c, "b@example.net")[0], "auth", 535, true)
	if h, a := ep.hitCount(), s.AuthAttempts(); h != 2 || a != 2 {
		t.Errorf("%d token requests, %d AUTH; want 2, 2", h, a)
	}
	if s.MailAttempts() != 0 {
		t.Error("MAIL after a failed AUTH")
	}
	if l := logs.String(); !strings.Contains(l, `level=ERROR msg="auth failed"`) || !strings.Contains(l, "mechanism=XOAUTH2") {
		t.Errorf("no error-level log:\n%s", logs)
	}
}

// TestXOAuth2EndpointFailure: a token endpoint that refuses, fails or is down
// makes a temporary AUTH error naming its host and no secret; nothing is
// sent to the SMTP server's AUTH.
func TestXOAuth2EndpointFailure(t *testing.T) {
	cases := []struct {
		name  string
		setup func(ep *tokenEndpoint, p *policy.Provider)
		want  string
	}{
		{"invalid_grant", func(ep *tokenEndpoint, p *policy.Provider) {
			ep.status, ep.errorDesc = http.StatusBadRequest, "Token "+refreshToken+" has been expired or revoked."
		}, "HTTP 400 Bad Request: invalid_grant: Token [redacted] has been expired or revoked. (check the client ID"},
		{"server error", func(ep *tokenEndpoint, p *policy.Provider) { ep.status = http.StatusServiceUnavailable }, "HTTP 503"},
		{"wrong secret", func(ep *tokenEndpoint, p *policy.Provider) { p.Auth.OAuth2.ClientSecret = "wrong-" + clientSecret }, "invalid_grant"},
		{"down", func(ep *tokenEndpoint, p *policy.Provider) {
			p.Auth.OAuth2.TokenURL = "https://" + smtptest.ClosedAddr(t) + "/token?client_secret=" + clientSecret
		}, "connection refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ep := newTokenEndpoint(t)
			s := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, AuthRequired: true, Tokens: ep.valid()})
			p := oauthProvider(s, ep, "xoauth2")
			tc.setup(ep, p)
			c, logs, _ := oauthClient(t, p, ep)
			e := wantErr(t, deliver(t, c, "b@example.net")[0], "auth", 0, true)
			host := strings.TrimPrefix(ep.srv.URL, "https://")
			if tc.name == "down" {
				host = tokenHost(p.Auth.OAuth2)
			}
			if msg := e.Error(); !strings.Contains(msg, "cannot get an OAuth2 access token from "+host+": ") || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q, want the host %s and %q", msg, host, tc.want)
			}
			noSecrets(t, "error", e.Error())
			if s.AuthAttempts() != 0 {
				t.Error("AUTH sent without a token")
			}
			if l := logs.String(); !strings.Contains(l, `level=ERROR msg="oauth2 token refresh failed"`) || !strings.Contains(l, "token_host="+host) {
				t.Errorf("no error-level log naming the host:\n%s", logs)
			}
		})
	}
}

// TestXOAuth2ClientCredentials: the client_credentials flow sends the scopes
// and no refresh token.
func TestXOAuth2ClientCredentials(t *testing.T) {
	ep := newTokenEndpoint(t)
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, AuthRequired: true, Tokens: ep.valid()})
	p := oauthProvider(s, ep, "xoauth2")
	o := p.Auth.OAuth2
	o.Flow, o.RefreshToken, o.RefreshTokenFrom = policy.FlowClientCredentials, "", ""
	o.Scopes = []string{"https://outlook.office365.com/.default"}
	c, _, _ := oauthClient(t, p, ep)
	deliverOK(t, c)
	deliverOK(t, c)
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if !slices.Equal(ep.grants, []string{"client_credentials"}) || !slices.Equal(ep.scopes, []string{"https://outlook.office365.com/.default"}) {
		t.Errorf("grants %v, scopes %v", ep.grants, ep.scopes)
	}
}

// TestXOAuth2NeverBeforeTLS: no token is fetched, and nothing sent, when the
// certificate does not verify.
func TestXOAuth2NeverBeforeTLS(t *testing.T) {
	ep := newTokenEndpoint(t)
	s := smtptest.Start(t, smtptest.Options{Mode: smtptest.ImplicitTLS, Untrusted: true, Tokens: ep.valid()})
	c, _, _ := oauthClient(t, oauthProvider(s, ep, "xoauth2"), ep)
	wantErr(t, deliver(t, c, "b@example.net")[0], "tls", 0, true)
	if ep.hitCount()+s.AuthAttempts() != 0 {
		t.Errorf("%d token requests, %d AUTH before verified TLS", ep.hitCount(), s.AuthAttempts())
	}
}

func TestXOAuth2ClientProtocol(t *testing.T) {
	c := &xoauth2Client{user: "me@example.com", token: "ya29.x"}
	mech, ir, err := c.Start()
	if mech != "XOAUTH2" || string(ir) != "user=me@example.com\x01auth=Bearer ya29.x\x01\x01" || err != nil {
		t.Errorf("Start = %q %q %v", mech, ir, err)
	}
	resp, err := c.Next([]byte(`{"status":"401"}` + "\n"))
	if resp == nil || len(resp) != 0 || err != nil || c.serverErr != `{"status":"401"}` {
		t.Errorf("Next = %q %v, serverErr %q; want an empty, non-nil response", resp, err, c.serverErr)
	}
	if _, err := c.Next([]byte("again")); err == nil {
		t.Error("a second challenge was answered")
	}
}
