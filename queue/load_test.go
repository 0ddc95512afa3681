package queue

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReopenResumesAndCleans leaves a spool as a crash would (a partial
// temp file, an unacknowledged body, a corrupt envelope, an envelope of an
// unknown version, an envelope without body, a half-finished dead-lettering)
// and checks what Open makes of it.
func TestReopenResumesAndCleans(t *testing.T) {
	dir := t.TempDir()
	o, logs := testOptions(t, dir)
	q, err := Open(o, &fakeDeliverer{})
	if err != nil {
		t.Fatal(err)
	}
	good := enqueue(t, q, "a@x", "b@x")
	corrupt := enqueue(t, q, "a@x")
	oldVersion := enqueue(t, q, "a@x")
	noBody := enqueue(t, q, "a@x")
	q.Close()

	qdir := filepath.Join(dir, "q")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "tmp", "0000000000000001-000000000001.eml"), "partial")
	orphan := "0000000000000002-000000000002"
	write(filepath.Join(qdir, orphan+".eml"), "never acknowledged")
	halfDead := "0000000000000003-000000000003"
	write(filepath.Join(qdir, halfDead+".eml"), "body")
	write(filepath.Join(dir, "dead", halfDead+".json"), "{}")
	write(filepath.Join(qdir, corrupt+".json"), "{not json")
	b, _ := os.ReadFile(filepath.Join(qdir, oldVersion+".json"))
	write(filepath.Join(qdir, oldVersion+".json"), strings.Replace(string(b), `"v": 1`, `"v": 99`, 1))
	os.Remove(filepath.Join(qdir, noBody+".eml"))

	q2 := openQueue(t, o, &fakeDeliverer{})
	items := q2.List()
	if len(items) != 1 || items[0].ID != good || len(items[0].Rcpts) != 2 {
		t.Fatalf("after reopen: %+v, want only %s", items, good)
	}
	assertEmptyDir(t, filepath.Join(dir, "tmp"))
	for _, p := range []string{
		filepath.Join(qdir, orphan+".eml"),
		filepath.Join(qdir, halfDead+".eml"),
	} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still exists", p)
		}
	}
	for _, p := range []string{
		filepath.Join(dir, "dead", halfDead+".eml"),
		filepath.Join(dir, "quarantine", corrupt+".json"),
		filepath.Join(dir, "quarantine", corrupt+".eml"),
		filepath.Join(dir, "quarantine", oldVersion+".json"),
		filepath.Join(dir, "quarantine", noBody+".json"),
	} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("want %s: %v", p, err)
		}
	}
	log := logs.String()
	for _, want := range []string{"quarantined id=" + corrupt, "envelope version 99", "has no body"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}
