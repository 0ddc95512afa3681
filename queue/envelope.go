package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Status is the delivery state of one recipient.
type Status string

const (
	Pending   Status = "pending"   // not tried yet, or moved to the next provider of its route
	Deferred  Status = "deferred"  // a temporary failure on every provider; waits for NextAttempt
	Delivered Status = "delivered" // accepted by a provider
	Failed    Status = "failed"    // permanent failure or expired
)

// Final reports whether no more attempts will be made.
func (s Status) Final() bool { return s == Delivered || s == Failed }

// envelopeVersion is the "v" of the .json files this code writes and reads.
const envelopeVersion = 1

// Item is a queued message's envelope: the content of <id>.json.
type Item struct {
	V       int       `json:"v"`
	ID      string    `json:"id"`
	From    string    `json:"from"`
	Arrived time.Time `json:"arrived"`
	Size    int64     `json:"size"`
	Client  string    `json:"client"`
	Rcpts   []Rcpt    `json:"rcpts"`
	// Requeued is when an operator moved it back from dead/; max_age
	// counts from then.
	Requeued time.Time `json:"requeued,omitzero"`
	// Warned is set once a delay warning has been sent.
	Warned  bool    `json:"warned,omitempty"`
	History []Event `json:"history,omitempty"` // the last maxHistory attempts' outcomes

	// envSize is the size of the envelope's file in q/ (0: unknown), so
	// that a recycled file can be overwritten without a truncate
	// (recycle.go). Not part of the envelope.
	envSize int64
}

// Event is one recipient's outcome of one attempt, kept for the operator
// and for dead letters.
type Event struct {
	Time     time.Time `json:"time"`
	Rcpt     string    `json:"rcpt"`
	Provider string    `json:"provider,omitempty"`
	Status   Status    `json:"status"`
	Code     int       `json:"code,omitempty"`
	Text     string    `json:"text,omitempty"` // the error, or the provider's reply
}

// maxHistory bounds History, so that a long outage cannot grow an envelope
// without end.
const maxHistory = 50

// since is when max_age started counting.
func (it *Item) since() time.Time {
	if it.Requeued.After(it.Arrived) {
		return it.Requeued
	}
	return it.Arrived
}

// addEvent appends to History, dropping the oldest past maxHistory.
func (it *Item) addEvent(ev Event) {
	it.History = append(it.History, ev)
	if n := len(it.History) - maxHistory; n > 0 {
		it.History = append(it.History[:0:0], it.History[n:]...)
	}
}

// Rcpt is one recipient's route and delivery state.
type Rcpt struct {
	Addr        string    `json:"addr"`
	Route       []string  `json:"route"` // provider names, tried in order
	Index       int       `json:"index"` // the provider of Route now in use
	Status      Status    `json:"status"`
	Attempts    int       `json:"attempts"`
	LastError   string    `json:"last_error,omitempty"`
	LastCode    int       `json:"last_code,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	Provider    string    `json:"provider,omitempty"` // who accepted it (delivered)
	Reply       string    `json:"reply,omitempty"`    // the accepting provider's reply
}

// idPattern is what newID produces; anything else in q/ is not ours.
var idPattern = regexp.MustCompile(`^[0-9a-f]{16}-[0-9a-f]{12}$`)

// clone returns a deep copy, so callers can read it without the queue's lock.
func (it *Item) clone() Item {
	c := *it
	c.History = append([]Event(nil), it.History...)
	c.Rcpts = make([]Rcpt, len(it.Rcpts))
	for i, r := range it.Rcpts {
		r.Route = append([]string(nil), r.Route...)
		c.Rcpts[i] = r
	}
	return c
}

// done reports whether every recipient is final, and whether any failed.
func (it *Item) done() (done, anyFailed bool) {
	for _, r := range it.Rcpts {
		if !r.Status.Final() {
			return false, false
		}
		if r.Status == Failed {
			anyFailed = true
		}
	}
	return true, anyFailed
}

// due returns the earliest time a recipient wants an attempt; ok is false
// when every recipient is final.
func (it *Item) due() (t time.Time, ok bool) {
	for _, r := range it.Rcpts {
		if r.Status.Final() {
			continue
		}
		if !ok || r.NextAttempt.Before(t) {
			t, ok = r.NextAttempt, true
		}
	}
	return t, ok
}

func encodeItem(it *Item) ([]byte, error) {
	b, err := json.MarshalIndent(it, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// decodeItem parses and checks an envelope; wantID is the ID its file name gives.
func decodeItem(b []byte, wantID string) (*Item, error) {
	var it Item
	if err := json.Unmarshal(b, &it); err != nil {
		return nil, fmt.Errorf("not a valid envelope: %w", err)
	}
	if it.V != envelopeVersion {
		return nil, fmt.Errorf("envelope version %d, this tlsrelay reads version %d", it.V, envelopeVersion)
	}
	if it.ID != wantID {
		return nil, fmt.Errorf("envelope id %q does not match its file name %q", it.ID, wantID)
	}
	if len(it.Rcpts) == 0 {
		return nil, errors.New("envelope has no recipients")
	}
	for i, r := range it.Rcpts {
		if len(r.Route) == 0 || r.Index < 0 || r.Index >= len(r.Route) {
			return nil, fmt.Errorf("recipient %d has a bad route or index", i)
		}
		switch r.Status {
		case Pending, Deferred, Delivered, Failed:
		default:
			return nil, fmt.Errorf("recipient %d has unknown status %q", i, r.Status)
		}
	}
	return &it, nil
}
