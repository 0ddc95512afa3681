package queue

import "sync"

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
	want := s.started + 1
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
