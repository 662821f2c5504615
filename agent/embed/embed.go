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
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/alpinist/alpinist/arch"
)

// Agent returns the agent binary for an Alpine arch.
func Agent(name string) ([]byte, error) {
	a, _ := arch.Lookup(name)
	if a.GOARCH == "" {
		return nil, fmt.Errorf("agent: no Go port for arch %q", name)
	}
	if b, ok, err := embedded(a.Agent()); ok {
		return b, err
	}
	return buildAgent(a)
}

// buildAgent compiles cmd/alpinist-agent for a's GOARCH (and GOARM) with
// the Go toolchain, caching the result by the source's hash. It only
// works from a source checkout.
func buildAgent(a arch.Arch) ([]byte, error) {
	goarch := a.GOARCH
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
	files, err := Sources(root, goarch)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", p, len(data))
		h.Write(data)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	out := filepath.Join(cache, "alpinist", "agents", hex.EncodeToString(h.Sum(nil))[:16]+"-"+a.Agent())
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
	if a.GOARM != "" {
		cmd.Env = append(cmd.Env, "GOARM="+a.GOARM)
	}
	if msg, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("agent: go build for %s: %v\n%s", a.Agent(), err, msg)
	}
	if err := os.Rename(tmp, out); err != nil {
		return nil, err
	}
	return os.ReadFile(out)
}

// Sources are the files the agent for goarch is built from, in the
// source tree at root: the Go and embedded files of every package of
// this module that cmd/alpinist-agent links (go list -deps, so apk/*
// and internal/* too), and go.mod and go.sum for the
// rest. The agent's cache key hashes them; the Makefile derives its
// AGENT_SRC the same way.
func Sources(root, goarch string) ([]string, error) {
	cmd := exec.Command("go", "list", "-deps", "-f",
		`{{if .Module}}{{if .Module.Main}}{{range .GoFiles}}{{$.Dir}}/{{.}}
{{end}}{{range .EmbedFiles}}{{$.Dir}}/{{.}}
{{end}}{{end}}{{end}}`, "./cmd/alpinist-agent")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%v: %s", err, ee.Stderr)
		}
		return nil, fmt.Errorf("agent: go list -deps for %s: %w", goarch, err)
	}
	files := strings.Fields(string(out))
	files = append(files, filepath.Join(root, "go.mod"), filepath.Join(root, "go.sum"))
	slices.Sort(files)
	return files, nil
}
