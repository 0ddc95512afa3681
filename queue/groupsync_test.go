package queue

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestDirSyncerNeverEarly: 50 concurrent callers; each must return only
// after an fsync that began after it called, and they share fsyncs.
func TestDirSyncerNeverEarly(t *testing.T) {
	var events atomic.Int64 // orders calls and fsync starts
	var mu sync.Mutex
	var finished []int64 // start events of completed fsyncs
	s := newDirSyncer(func() error {
		start := events.Add(1)
		time.Sleep(2 * time.Millisecond) // a disk's fsync latency, so that callers pile up
		mu.Lock()
		finished = append(finished, start)
		mu.Unlock()
		return nil
	})
	var wg sync.WaitGroup
	var early atomic.Int32
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			called := events.Add(1)
			if err := s.Sync(); err != nil {
				t.Error(err)
			}
			mu.Lock()
			ok := false
			for _, st := range finished {
				ok = ok || st > called
			}
			mu.Unlock()
			if !ok {
				early.Add(1)
			}
		}()
	}
	wg.Wait()
	if early.Load() > 0 {
		t.Fatalf("%d callers returned before an fsync that began after their call", early.Load())
	}
	if n := len(finished); n >= 50 {
		t.Errorf("%d fsyncs for 50 callers: nothing was shared", n)
	}
	t.Logf("50 callers, %d fsyncs", len(finished))
}

func TestDirSyncerReportsErrors(t *testing.T) {
	boom := errors.New("EIO")
	fail := true
	s := newDirSyncer(func() error {
		if fail {
			return boom
		}
		return nil
	})
	if err := s.Sync(); !errors.Is(err, boom) {
		t.Fatalf("Sync = %v, want the fsync's error", err)
	}
	fail = false
	if err := s.Sync(); err != nil {
		t.Fatalf("Sync after recovery = %v, want nil (a later fsync succeeded)", err)
	}
}

// Later runs no fsync at once: the next Sync covers it, and Flush then
// has nothing to do.
func TestLaterCoveredBySync(t *testing.T) {
	var n atomic.Int32
	s := newDirSyncer(func() error { n.Add(1); return nil })
	s.laterErr = func(error) { t.Error("the timer ran") }
	s.Later(time.Hour)
	if n.Load() != 0 {
		t.Fatal("Later ran an fsync at once")
	}
	if err := s.Sync(); err != nil || n.Load() != 1 {
		t.Fatalf("Sync: %v, %d fsyncs", err, n.Load())
	}
	if err := s.Flush(); err != nil || n.Load() != 1 {
		t.Fatalf("Flush after a covering Sync: %v, %d fsyncs, want no new one", err, n.Load())
	}
}

// Left alone, Later's fsync runs after the delay; Flush runs one at once
// for every Later pending.
func TestLaterTimerAndFlush(t *testing.T) {
	ran := make(chan struct{}, 10)
	s := newDirSyncer(func() error { ran <- struct{}{}; return nil })
	s.laterErr = func(err error) { t.Error(err) }
	s.Later(time.Millisecond)
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("Later's fsync did not run within 10s")
	}
	s.Later(time.Hour)
	s.Later(time.Hour)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(ran) != 1 {
		t.Fatalf("%d fsyncs after the timer's, want 1 (Flush's)", len(ran))
	}
}
