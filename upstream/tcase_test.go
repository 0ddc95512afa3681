package upstream

import (
	"testing"

	"github.com/tlsrelay/tlsrelay/delivery"
	"github.com/tlsrelay/tlsrelay/internal/smtptest"
	"github.com/tlsrelay/tlsrelay/policy"
)

// security.md (b), the relay as a client (T40, T49-T59). Most were proved by
// tests written before the catalogue was numbered; these run them under the
// case's ID so that it can be found. T54 is new.

func TestT40EndlessReply(t *testing.T)      { TestEndlessReplyIsBounded(t) }
func TestT49STARTTLSStripping(t *testing.T) { TestNoSTARTTLSOffered(t) }
func TestT50ResponseInjection(t *testing.T) { TestSTARTTLSResponseInjectionIgnored(t) }
func TestT51CertificateValidation(t *testing.T) {
	TestCertificateFailures(t)
	TestTLSFailuresSendNothing(t)
}

// TestT52SNI: the server name sent and checked is the provider's
// tls.server_name (default: its host).
func TestT52SNI(t *testing.T) { TestTLSConfigBuilder(t) }

func TestT53VersionAndCipherFloor(t *testing.T) { TestTLSVersions(t); TestLegacySuiteIsPerProvider(t) }

// TestT54ModeMismatch: implicit TLS against a plaintext server and STARTTLS
// against an implicit-TLS server both fail, temporarily, and never fall back
// to plaintext: no AUTH, no MAIL.
func TestT54ModeMismatch(t *testing.T) {
	for _, tc := range []struct {
		server smtptest.Mode
		mode   policy.TLSMode
	}{{smtptest.Plain, policy.TLSImplicit}, {smtptest.ImplicitTLS, policy.TLSStartTLS}} {
		t.Run(string(tc.mode), func(t *testing.T) {
			s := smtptest.Start(t, smtptest.Options{Mode: tc.server, Users: users})
			c, _ := newClient(t, fakeProvider(s, tc.mode, "plain"))
			r := deliver(t, c, "b@example.net")[0]
			if r.Err == nil || !delivery.Temporary(r.Err) {
				t.Fatalf("result %+v, want a temporary error", r)
			}
			if a, m := s.AuthAttempts(), s.MailAttempts(); a+m != 0 {
				t.Errorf("%d AUTH and %d MAIL sent", a, m)
			}
		})
	}
}

func TestT55AuthOnlyOverTLS(t *testing.T) {
	TestPlaintextRefusedForRemoteHost(t)
	TestAuthRejectedIsTemporary(t)
	TestAuthMechanismNotOffered(t)
	TestXOAuth2NeverBeforeTLS(t)
}
func TestT56ConnectionRefused(t *testing.T) { TestConnectionRefused(t) }
func TestT57PerPhaseTimeouts(t *testing.T)  { TestSilentServerTimesOut(t); TestStalledBodyTimesOut(t) }
func TestT58MixedRecipients(t *testing.T)   { TestRecipientReplies(t); TestNoRecipientAcceptedNoData(t) }
func TestT59ReplyClasses(t *testing.T)      { TestMailAndDataReplies(t); TestClassification(t) }
