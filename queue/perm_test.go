package queue

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A spool directory of ours that is too open is tightened and logged.
func TestSpoolTooOpenIsTightened(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	os.MkdirAll(filepath.Join(dir, dirDead), 0o700)
	os.Chmod(dir, 0o777)
	os.Chmod(filepath.Join(dir, dirDead), 0o755)
	o, logs := testOptions(t, dir)
	openQueue(t, o, nopDeliverer{})
	for _, d := range []string{dir, filepath.Join(dir, dirDead)} {
		if st, _ := os.Stat(d); st.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %04o, want 0700", d, st.Mode().Perm())
		}
	}
	if !strings.Contains(logs.String(), "spool permissions tightened") || !strings.Contains(logs.String(), "from=0777") {
		t.Errorf("not logged:\n%s", logs)
	}
}

// A 0777 spool owned by another user stops the start with the fix.
func TestSpoolOfAnotherOwnerRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the spool directory another owner (chown)")
	}
	dir := filepath.Join(t.TempDir(), "spool")
	os.MkdirAll(dir, 0o700)
	os.Chmod(dir, 0o777)
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	o, _ := testOptions(t, dir)
	_, err := Open(o, nopDeliverer{})
	if err == nil || !strings.Contains(err.Error(), "owned by uid 65534 with mode 0777") || !strings.Contains(err.Error(), `run "chown -R 0 `+dir) {
		t.Fatalf("Open: %v; want the owner, the mode and the fix", err)
	}
}

// A symbolic link planted in dead/ is refused by Requeue, never followed,
// and left where it is.
func TestRequeueRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	q := openQueue(t, o, nopDeliverer{})
	secret := filepath.Join(t.TempDir(), "outside.eml")
	os.WriteFile(secret, []byte("Subject: secret outside the spool\r\n\r\nx\r\n"), 0o600)
	id := "18eeb064abd6b2c1-1ee0249cd710"
	env := `{"v":1,"id":"` + id + `","from":"a@example.com","size":10,"rcpts":[{"addr":"b@example.org","route":["p1"],"index":0,"status":"failed"}]}`
	os.WriteFile(filepath.Join(dir, dirDead, id+".json"), []byte(env), 0o600)
	link := filepath.Join(dir, dirDead, id+".eml")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	err := q.Requeue(id)
	if err == nil || !strings.Contains(err.Error(), "is a symbolic link: refused") {
		t.Fatalf("Requeue: %v; want a refusal naming the link", err)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was moved or removed: %v", err)
	}
	if len(q.List()) != 0 {
		t.Fatal("something was queued")
	}
	// A link as the envelope itself is refused too.
	os.Remove(filepath.Join(dir, dirDead, id+".json"))
	os.Symlink(secret, filepath.Join(dir, dirDead, id+".json"))
	if _, err := q.GetDead(id); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("GetDead through a link: %v", err)
	}
}
