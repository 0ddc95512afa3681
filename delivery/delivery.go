// Package delivery holds the contract between the spool and the delivery
// side, as database/sql/driver does for database/sql: the queue hands a
// Message to a Deliverer and gets a Result per recipient back. It imports
// none of the relay's packages, so that queue and upstream each import it
// and neither imports the other (docs/design.md, "Packages and imports").
package delivery

import (
	"context"
	"errors"
	"io"
)

// Deliverer makes one delivery attempt of msg to rcpts through the named
// provider. It never retries: the queue owns retries and failover.
//
// It returns one Result per recipient, in the order of rcpts. A result with a
// nil Err means the provider accepted the message for that recipient. An
// implementation that returns a slice of the wrong length is treated as a
// temporary failure for every recipient.
//
// *upstream.Client implements it; *queue.Queue calls it.
type Deliverer interface {
	Deliver(ctx context.Context, provider string, msg *Message, rcpts []string) []Result
}

// Message is what a Deliverer sees of a queued item.
type Message struct {
	ID   string    // queue ID
	From string    // envelope sender ("" for the null sender)
	Size int64     // bytes in Body
	Body io.Reader // the spooled message: CRLF line endings, not dot-stuffed
}

// Result is the outcome of one attempt for one recipient.
type Result struct {
	Err   error  // nil: accepted upstream. Permanent if it has Permanent() == true.
	Reply string // the provider's final reply, for the log ("250 2.0.0 Ok: queued as X")
	TLS   string // the TLS version and cipher suite used, for the log
}

// Temporary reports whether a delivery error should be retried. An error is
// permanent only if something in its chain says so with a method
// Permanent() bool returning true; everything else (network, TLS, timeouts,
// unknown errors) is temporary, so that a doubt never loses mail.
//
// The method is not called Temporary on purpose: net.Error has a deprecated
// Temporary() that is false for errors (connection refused) we must retry.
func Temporary(err error) bool {
	if err == nil {
		return false
	}
	var p interface{ Permanent() bool }
	if errors.As(err, &p) {
		return !p.Permanent()
	}
	return true
}

// SMTPCode returns the SMTP reply code an error carries (through a method
// SMTPCode() int anywhere in its chain), or 0.
func SMTPCode(err error) int {
	var c interface{ SMTPCode() int }
	if errors.As(err, &c) {
		return c.SMTPCode()
	}
	return 0
}
