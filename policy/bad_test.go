package policy

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// testEnv is the environment the test configs see.
var testEnv = mapEnv(map[string]string{
	"QQ_USER":      "me@qq.com",
	"QQ_AUTH_CODE": "authcode-for-tests",
	"EMPTY_VAR":    "",
})

func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

var wantRE = regexp.MustCompile(`^# want: ([0-9]+): (.+)$`)

// errLineRE is the shape of every line of a config error: FILE:LINE: ...
var errLineRE = regexp.MustCompile(`^[^:]+:[0-9]+: \S`)

// TestBadConfigs loads each testdata/bad-*.yaml, whose first line reads
// "# want: LINE: TEXT", and checks that Load fails with an error line that
// starts with "FILE:LINE: " and contains TEXT.
func TestBadConfigs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "bad-*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 20 {
		t.Fatalf("found %d bad-*.yaml cases, want at least 20", len(files))
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			line, text := readWant(t, file)
			c, err := Load(file, testEnv)
			if err == nil {
				t.Fatalf("Load succeeded, want error %s:%s: ...%s...\neffective:\n%s", file, line, text, c.Effective())
			}
			prefix := file + ":" + line + ": "
			found := false
			for _, l := range strings.Split(err.Error(), "\n") {
				if !errLineRE.MatchString(l) {
					t.Errorf("error line %q does not read FILE:LINE: ...", l)
				}
				if strings.HasPrefix(l, prefix) && strings.Contains(l, text) {
					found = true
				}
			}
			if !found {
				t.Errorf("error:\n%v\nwant a line starting %q containing %q", err, prefix, text)
			}
		})
	}
}

// readWant returns the line number and text of a case's "# want:" comment.
func readWant(t *testing.T, file string) (line, text string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan()
	m := wantRE.FindStringSubmatch(sc.Text())
	if m == nil {
		t.Fatalf("%s: first line %q, want \"# want: LINE: TEXT\"", file, sc.Text())
	}
	return m[1], m[2]
}

// TestAllErrorsSortedByLine checks that several errors come back at once,
// one per line, in line order.
func TestAllErrorsSortedByLine(t *testing.T) {
	src := `providers:
  qq:
    host: smtp.qq.com
    tls: {mode: tls}
listen:
  bogus: 1
  addr: ""
queue:
  workers: -1
default: [nope]
`
	_, err := Parse("x.yaml", []byte(src), testEnv)
	if err == nil {
		t.Fatal("Parse succeeded, want errors")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{
		"x.yaml:4: providers.qq.tls.mode: ",
		"x.yaml:6: listen.bogus: unknown key",
		"x.yaml:7: listen.addr: ",
		"x.yaml:9: queue.workers: ",
		"x.yaml:10: default[0]: ",
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("error %d = %q, want prefix %q", i, lines[i], w)
		}
	}
}

// TestLoadMissingFile checks that Load names the file it cannot read.
func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), testEnv)
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("Load = %v, want an error naming nope.yaml", err)
	}
}
