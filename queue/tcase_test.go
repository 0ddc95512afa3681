package queue

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// security.md (b), "Queue durability" (T41, T44-T48). T42 and T43 need the
// whole relay: the root package's tcase_e2e_test.go.

func TestT41SyncBefore250(t *testing.T)        { TestEnqueueSyncOrder(t) }
func TestT44DiskFull(t *testing.T)             { TestEnqueueWriteFailureLeavesNothing(t); TestEnqueueFull(t) }
func TestT45FsyncOrRenameFailure(t *testing.T) { TestEnqueueWriteFailureLeavesNothing(t) }
func TestT46CorruptSpoolAtStart(t *testing.T)  { TestReopenResumesAndCleans(t) }
func TestT47QueueFull(t *testing.T)            { TestEnqueueFull(t) }

// TestT48SpoolPermissions: with umask 000, the spool's directories are 0700
// and its files 0600. (Refusing a spool owned by another user or writable
// by others is not done: docs/security.md.)
func TestT48SpoolPermissions(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "spool")
	o, _ := testOptions(t, dir)
	q := openQueue(t, o, &fakeDeliverer{})
	id := enqueue(t, q, "x@example.net")
	for _, p := range []string{dir, filepath.Join(dir, "q"), filepath.Join(dir, "tmp"), filepath.Join(dir, "dead")} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, %v; want 0700", p, st.Mode(), err)
		}
	}
	for _, p := range []string{filepath.Join(dir, "q", id+".eml"), filepath.Join(dir, "q", id+".json")} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want 0600", p, st.Mode(), err)
		}
	}
}

func TestT58PerRecipientState(t *testing.T) { TestPermanentFailureIsPerRecipient(t) }
func TestT60BackoffAndLifetime(t *testing.T) {
	TestBackoff(t)
	TestBackoffJitterBounds(t)
	TestExpiryMovesToDead(t)
	TestNoBounceForNullSenderOrWhenOff(t)
}
