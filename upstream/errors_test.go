package upstream

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/tlsrelay/tlsrelay/delivery"
)

func TestClassification(t *testing.T) {
	cases := []struct {
		name string
		err  *Error
		code int
		temp bool
		text string
	}{
		{"rcpt 550", replyErr("rcpt", smtpErr(550, 5, 1, 1, "no such user")), 550, false, "rcpt: 550 5.1.1 no such user"},
		{"rcpt 552", replyErr("rcpt", smtpErr(552, 5, 2, 2, "full")), 552, true, "rcpt: 552 5.2.2 full"},
		{"rcpt 451", replyErr("rcpt", smtpErr(451, 4, 3, 0, "later")), 451, true, "rcpt: 451 4.3.0 later"},
		{"mail 552", replyErr("mail", smtpErr(552, 5, 3, 4, "too big")), 552, false, "mail: 552 5.3.4 too big"},
		{"mail 550", replyErr("mail", smtpErr(550, 5, 7, 1, "no")), 550, false, "mail: 550 5.7.1 no"},
		{"data 554", replyErr("data", smtpErr(554, 5, 6, 0, "spam")), 554, false, "data: 554 5.6.0 spam"},
		{"data 451", replyErr("data", smtpErr(451, 4, 3, 0, "later")), 451, true, "data: 451 4.3.0 later"},
		{"data odd code", replyErr("data", &smtp.SMTPError{Code: 354, Message: "what"}), 354, true, "data: 354 what"},
		{"no reply", replyErr("rcpt", io.ErrUnexpectedEOF), 0, true, "rcpt: unexpected EOF"},
		{"auth 535", setupErr("auth", smtpErr(535, 5, 7, 8, "bad credentials")), 535, true, "auth: 535 5.7.8 bad credentials"},
		{"greeting 554", setupErr("greeting", smtpErr(554, 5, 0, 0, "go away")), 554, true, "greeting: 554 5.0.0 go away"},
		{"multi-line", replyErr("mail", &smtp.SMTPError{Code: 550, Message: "one\ntwo"}), 550, false, "mail: 550 one two"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.err
			if e.SMTPCode() != tc.code || delivery.Temporary(e) != tc.temp || e.Permanent() == tc.temp {
				t.Errorf("code %d, temporary %v; want %d, %v", e.SMTPCode(), delivery.Temporary(e), tc.code, tc.temp)
			}
			if e.Error() != tc.text {
				t.Errorf("Error() = %q, want %q", e.Error(), tc.text)
			}
			if wrapped := fmt.Errorf("attempt: %w", e); delivery.Temporary(wrapped) != tc.temp {
				t.Error("classification lost when wrapped")
			}
			var se *smtp.SMTPError
			if errors.As(e, &se) != (tc.code != 0) {
				t.Error("Unwrap does not reach the *smtp.SMTPError")
			}
		})
	}
}
