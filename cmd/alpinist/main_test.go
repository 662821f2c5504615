package main

import (
	"context"
	"os"
	"testing"
)

// selfEnv makes the test binary run as alpinist: fleet run --local
// starts its workers as processes of its own executable, which in
// tests is this binary.
const selfEnv = "ALPINIST_TEST_BINARY_IS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(selfEnv) == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Setenv(selfEnv, "1")
	os.Exit(m.Run())
}
