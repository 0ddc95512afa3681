package queue

import (
	"fmt"
	"io"
)

// A body counts against Options.MaxBytes from its first byte: it reserves
// budget in chunks as it is read into tmp/, so that bodies still being
// received (up to max_connections of them) cannot put the spool past its
// budget. Past it, the read fails with a full error (the relay answers
// 452 4.3.1, nothing acknowledged is lost) and the partial file goes.

// budgetChunk is how much budget a body reserves at a time; what it does
// not use is given back when the body is complete.
const budgetChunk = 16 << 10

type budgetReader struct {
	q        *Queue
	r        io.Reader
	read     int64 // bytes read so far
	reserved int64 // budget held, >= read
}

func (b *budgetReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read += int64(n)
	if b.read > b.reserved {
		want := max(b.read-b.reserved, min(budgetChunk, int64(len(p))))
		if rerr := b.q.reserveBytes(want); rerr != nil {
			return 0, rerr
		}
		b.reserved += want
	}
	return n, err
}

// reserveBytes takes n bytes of the budget, or fails with a full error.
func (q *Queue) reserveBytes(n int64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.opts.MaxBytes > 0 && q.bytes+n > q.opts.MaxBytes {
		return &fullError{reason: fmt.Sprintf("%d bytes queued or being received plus %d would exceed queue.max_bytes", q.bytes, n)}
	}
	q.bytes += n
	return nil
}

// giveBack returns n bytes of budget.
func (q *Queue) giveBack(n int64) {
	q.mu.Lock()
	q.bytes -= n
	q.mu.Unlock()
}
