// Package embed gives the host the build VM's agent binary for a target
// architecture. `make` builds the agents (static, CGO_ENABLED=0) into
// agent/embed/agents/ and builds alpinist with the alpinist_agents tag,
// which embeds them, so users need no Go toolchain. Without the tag (go
// test, go run) the agent is built on demand with the Go toolchain into
// a cache directory.
package embed

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// GOARCH maps Alpine arches to Go's.
var GOARCH = map[string]string{
	"x86_64": "amd64", "aarch64": "arm64", "riscv64": "riscv64", "armv7": "arm",
	"x86": "386", "ppc64le": "ppc64le", "s390x": "s390x",
}

// Agent returns the agent binary for an Alpine arch.
func Agent(arch string) ([]byte, error) {
	goarch, ok := GOARCH[arch]
	if !ok {
		return nil, fmt.Errorf("agent: no Go port for arch %q", arch)
	}
	if b, ok := embedded(goarch); ok {
		return b, nil
	}
	return buildAgent(goarch)
}

// buildAgent compiles cmd/alpinist-agent for goarch with the Go
// toolchain, caching the result by the source's hash. It only works from
// a source checkout.
func buildAgent(goarch string) ([]byte, error) {
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(self), "..", "..")
	src := filepath.Join(root, "cmd", "alpinist-agent")
	if _, err := os.Stat(src); err != nil {
		return nil, fmt.Errorf("agent: this alpinist was built without embedded agents and no source tree is at hand; build it with make")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("agent: this alpinist was built without embedded agents (build it with make), and no Go toolchain is installed to build one")
	}
	h := sha256.New()
	for _, dir := range []string{src, filepath.Join(root, "agent")} {
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
				if data, err := os.ReadFile(p); err == nil {
					fmt.Fprintf(h, "%s %d\n", p, len(data))
					h.Write(data)
				}
			}
			return nil
		})
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	out := filepath.Join(cache, "alpinist", "agents", hex.EncodeToString(h.Sum(nil))[:16]+"-"+goarch)
	if b, err := os.ReadFile(out); err == nil {
		return b, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, err
	}
	// Several test binaries may build the same agent at once: each into
	// its own temporary name, and the rename makes one of them win.
	tmp := fmt.Sprintf("%s.tmp-%d", out, os.Getpid())
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags", "-s -w", "-o", tmp, "./cmd/alpinist-agent")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if msg, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("agent: go build for %s: %v\n%s", goarch, err, msg)
	}
	if err := os.Rename(tmp, out); err != nil {
		return nil, err
	}
	return os.ReadFile(out)
}
