package main

import (
	"os"
	"testing"
)

// unsetEnv removes k for the rest of the test (t.Setenv first records the
// old value so that it is restored).
func unsetEnv(t *testing.T, k string) {
	t.Helper()
	t.Setenv(k, "")
	os.Unsetenv(k)
}
