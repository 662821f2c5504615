// Command pack compresses a build VM agent for embedding into alpinist
// (the Makefile runs it): go run ./agent/embed/pack AGENT AGENT.zst.
package main

import (
	"fmt"
	"os"

	"github.com/alpinist/alpinist/agent/embed"
	"github.com/alpinist/alpinist/internal/atomicfile"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: pack AGENT AGENT.zst")
		os.Exit(2)
	}
	if err := pack(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "pack:", err)
		os.Exit(1)
	}
}

func pack(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	z, err := embed.Pack(b)
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(dst, z, 0o644)
}
