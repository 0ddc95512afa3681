package queue

import (
	"sync"
	"time"
)

// dirSyncer shares directory fsyncs among concurrent callers (group
// commit). A caller's sync is only satisfied by an fsync that started
// after it asked, that is after its renames, so no caller is told "durable"
// early; callers that arrive while an fsync runs share the next one. Under
// load this turns N directory fsyncs into about two, without skipping one.
type dirSyncer struct {
	sync func() error

	mu        sync.Mutex
	cond      *sync.Cond
	started   uint64 // fsyncs begun
	completed uint64 // the generation of the last fsync finished
	running   bool
	errGen    uint64 // the last generation that failed
	err       error  // its error
	lazyWant  uint64 // the generation that covers every Later so far
	lazyTimer bool   // a Later timer is pending
	// laterErr receives the error of an fsync that Later's timer ran.
	laterErr func(error)
}

func newDirSyncer(fsync func() error) *dirSyncer {
	s := &dirSyncer{sync: fsync}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// Sync returns once an fsync that began after this call has finished, with
// its error.
func (s *dirSyncer) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waitLocked(s.started + 1)
}

// waitLocked returns once fsync generation want has finished, running it
// if no fsync runs. Hold s.mu.
func (s *dirSyncer) waitLocked(want uint64) error {
	for s.completed < want {
		if s.running {
			s.cond.Wait()
			continue
		}
		s.running = true
		s.started++
		gen := s.started
		s.mu.Unlock()
		err := s.sync()
		s.mu.Lock()
		s.running = false
		s.completed = gen
		if err != nil {
			s.errGen, s.err = gen, err
		}
		s.cond.Broadcast()
	}
	if s.errGen >= want {
		return s.err
	}
	return nil
}

// Later asks for an fsync that begins after this call, without waiting for
// it and without running one at once: the next Sync by anyone covers it
// (under load, an enqueue's, a few milliseconds later), and if none has
// begun within delay, one runs then and a failure goes to s.laterErr.
// Flush runs it at once.
func (s *dirSyncer) Later(delay time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lazyWant = s.started + 1
	if s.lazyTimer {
		return // the pending timer reads lazyWant when it fires
	}
	s.lazyTimer = true
	time.AfterFunc(delay, func() {
		s.mu.Lock()
		s.lazyTimer = false
		err := s.waitLocked(s.lazyWant)
		s.mu.Unlock()
		if err != nil && s.laterErr != nil {
			s.laterErr(err)
		}
	})
}

// Flush returns once every Later so far is covered by a finished fsync,
// running one if needed.
func (s *dirSyncer) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waitLocked(s.lazyWant)
}
