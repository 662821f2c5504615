package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alpinist/alpinist/internal/testkit/hosttool"
	"github.com/alpinist/alpinist/internal/testkit/minirootfs"
	"github.com/alpinist/alpinist/internal/testkit/vmtest"
)

// TestGettingStarted runs docs/getting-started.md's tour as a newcomer
// would, from section 2 on: each YAML block whose first line is
// "# FILE" is written to FILE, and the shell blocks run in order with
// bash -e, in a directory laid out as the project's root (bin/alpinist,
// testdata/repo, and ../shared beside it).
func TestGettingStarted(t *testing.T) {
	vmtest.Binary(t, "x86_64")
	firmware(t, "x86_64")
	for _, tool := range [][2]string{{"skopeo", "skopeo"}, {"ssh", "openssh-client"}, {"ssh-keygen", "openssh-client"}} {
		hosttool.Need(t, tool[0], tool[1])
	}
	shared := filepath.Dir(filepath.Dir(minirootfs.Real(t)))
	repo, err := filepath.Abs(filepath.Join(generatedRepo(t), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	top := t.TempDir()
	root := filepath.Join(top, "main")
	for link, target := range map[string]string{
		filepath.Join(top, "shared"):            shared,
		filepath.Join(root, "bin", "alpinist"):  alpinistBinary(t),
		filepath.Join(root, "testdata", "repo"): repo,
	} {
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "getting-started.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, tour, ok := strings.Cut(string(doc), "\n## 2.")
	if !ok {
		t.Fatal("getting-started.md has no section 2")
	}
	script := "set -ex\n"
	files := 0
	for _, block := range strings.Split(tour, "```")[1:] {
		lang, body, _ := strings.Cut(block, "\n")
		switch lang {
		case "yaml":
			first, _, _ := strings.Cut(body, "\n")
			name, ok := strings.CutPrefix(first, "# ")
			if !ok {
				t.Fatalf("a YAML block of the tour does not start with # FILE:\n%s", body)
			}
			writeFile(t, filepath.Join(root, name), body, 0o644)
			files++
		case "sh":
			script += body
		}
	}
	if files == 0 || !strings.Contains(script, "alpinist build") {
		t.Fatalf("the tour's blocks were not found:\n%s", script)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the tour failed: %v\n%s", err, out)
	}
	for _, want := range []string{`"Architecture": "amd64"`, "3.19.1\n", "the same in a and b"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the tour's output lacks %q:\n%s", want, out)
		}
	}
}
