package deploy_test

// The deployment files' tests run from the repository root (they read
// Dockerfile and deploy/... as the operator's tools would, and the Go
// sources for metric names), against the tlsrelay binary built from it.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// tlsrelayBin is the binary TestMain builds from the repository.
var tlsrelayBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if err := os.Chdir(".."); err != nil {
		fmt.Fprintln(os.Stderr, "deploy tests: cd to the repository root:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "tlsrelay-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "deploy tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	tlsrelayBin = filepath.Join(dir, "tlsrelay")
	build := exec.Command(goTool(), "build", "-o", tlsrelayBin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "deploy tests: go build of the relay failed: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// goTool is the go command of the toolchain running the tests.
func goTool() string {
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}
