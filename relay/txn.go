package relay

import "time"

// Transaction slots (listen.max_transactions, transaction_wait).
//
// With hundreds of concurrent senders, ingest took the CPU that delivery
// needed: the messages in flight and the backlog of accepted but
// undelivered mail grew past what the spool recycles (queue/recycle.go),
// so every further message cost two file creates, and delivery fell
// further behind. On the bench machine at 100 and 500 sessions tlsrelay
// moved 56-66 % of its 20-session throughput end to end, at 1.5-1.9 ms of
// CPU a message instead of 1.0 (creates: 39 % of its CPU at 100 sessions,
// 4 % at 20). With 32 slots and the recycler's larger bound, in runs
// interleaved with the build before (4 each, 2026-12-07): 100 sessions
// 591 -> 661 msg/s, 1.72 -> 1.32 ms of CPU a message, ack p99 179 -> 85
// ms; 500 sessions 579 -> 683 msg/s, 1.75 -> 1.29 ms, 665 -> 91 ms;
// 20 sessions unchanged. Either change alone did not help (slots alone
// still overran 64 recycled files; a larger recycler alone never filled
// while the backlog grew). See docs/benchmarks.md, "Scale curve".
//
// A slot is taken at MAIL FROM and given back when the transaction ends:
// after DATA, RSET, a repeated EHLO, or the end of the session (go-smtp
// calls Reset for each). A MAIL FROM that finds none free waits, first
// come first served (a channel's blocked senders are), at most
// TransactionWait, and then goes ahead without one: slots pace senders,
// they never refuse one, and no wait is unbounded. A session that holds a
// slot and is slow (a large body over a slow link) delays others by at
// most TransactionWait each.

// takeSlot gives the session a transaction slot, waiting as above, unless
// a transaction is open (with a slot or without: that MAIL gets 503 and
// needs none); it reports whether it took one now (to give back if the
// MAIL then fails).
func (s *session) takeSlot() bool {
	s.mu.Lock()
	open := s.mailed
	s.mu.Unlock()
	if open {
		return false
	}
	select {
	case s.srv.slots <- struct{}{}:
	default:
		t := time.NewTimer(s.srv.opts.Listen.TransactionWait)
		defer t.Stop()
		select {
		case s.srv.slots <- struct{}{}:
		case <-t.C:
			s.srv.log.Debug("transaction slots full; going ahead without one", "client", s.conn.client,
				"max_transactions", cap(s.srv.slots), "waited", s.srv.opts.Listen.TransactionWait)
			return false
		case <-s.srv.ctx.Done():
			return false
		}
	}
	s.mu.Lock()
	s.slot = true
	s.mu.Unlock()
	return true
}

// giveSlotLocked gives back the session's slot, if it holds one. Hold s.mu.
func (s *session) giveSlotLocked() {
	if s.slot {
		s.slot = false
		<-s.srv.slots
	}
}
