package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/alpinist/alpinist/internal/testkit/hosttool"
	"github.com/alpinist/alpinist/internal/testkit/minirootfs"
	"github.com/alpinist/alpinist/internal/testkit/vmtest"
	"github.com/alpinist/alpinist/spec"
)

// imageSpec reads deploy/alpinist-image.yaml with its repositories and
// keys replaced (the only lines that change) and its packages kept to
// those keep allows (nil: all).
func imageSpec(t *testing.T, repos string, keep func(string) bool) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "alpinist-image.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	reposRE := regexp.MustCompile(`(?s)\nrepositories:\n.*?\nkeys: \[keys/\]\n`)
	if !reposRE.MatchString(text) {
		t.Fatal("deploy/alpinist-image.yaml: no repositories and keys to replace")
	}
	text = reposRE.ReplaceAllLiteralString(text, "\n"+repos)
	if keep != nil {
		var lines []string
		for _, l := range strings.Split(text, "\n") {
			if name, ok := strings.CutPrefix(strings.TrimSpace(l), "- "); ok && strings.HasPrefix(l, "  - ") && !strings.Contains(l, "{") {
				name = strings.Fields(name)[0]
				if !keep(name) {
					continue
				}
			}
			lines = append(lines, l)
		}
		text = strings.Join(lines, "\n")
	}
	return text
}

// TestAlpinistImageResolves: the alpinist image's packages (QEMU for
// every arch, its BIOS, the CA bundle) resolve against Alpine's real
// v3.19 main and community indexes for x86_64. (Alpine's mirror is not
// reachable here and the fixtures have no QEMU packages: the image's
// QEMU is resolved, not installed; TestAlpinistImage builds the rest.)
func TestAlpinistImageResolves(t *testing.T) {
	real := minirootfs.Real(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "bin", "alpinist-x86_64"), "stand-in", 0o755)
	p := filepath.Join(dir, "image.yaml")
	writeFile(t, p, imageSpec(t, "repositories:\n  - "+filepath.Join(real, "indexes", "v3.19-main")+"\n  - "+filepath.Join(real, "indexes", "v3.19-community")+"\nkeys: ["+filepath.Join(real, "keys")+"]\n", nil), 0o644)
	lock := mustCLI(t, "resolve", p, "--arch", "x86_64", "--cache", filepath.Join(dir, "cache"))
	for _, want := range []string{"qemu-system-x86_64 8.1.5-r0", "qemu-system-i386 8.1.5-r0", "qemu-system-aarch64 8.1.5-r0", "qemu-system-arm 8.1.5-r0",
		"qemu-system-ppc64 8.1.5-r0", "qemu-system-s390x 8.1.5-r0", "qemu-s390x-firmware 8.1.5-r0", "qemu-system-riscv64 8.1.5-r0", "seabios-bin 1.16.2-r0", "ca-certificates-bundle"} {
		if !strings.Contains(lock, want) {
			t.Errorf("the image's lock lacks %s:\n%s", want, lock)
		}
	}
	s, err := spec.Load(p)
	if err != nil || s.OCI.User != "alpinist" || strings.Join(s.OCI.Entrypoint, " ") != "/usr/bin/alpinist" || len(s.Users) != 1 || s.Users[0].UID != 65532 {
		t.Errorf("the image spec: %v: oci %+v, users %+v", err, s.OCI, s.Users)
	}
}

// TestAlpinistImage builds the alpinist image's spec from Alpine's real
// v3.19 packages, all of it but QEMU and its BIOS (not in the fixtures),
// with a static alpinist built for it: the run step keeps the x86_64
// binary, which runs in Alpine (alpinist version in the build VM), and
// the image runs it as user alpinist (65532) with podman.
func TestAlpinistImage(t *testing.T) {
	vmtest.Binary(t, "x86_64")
	dir := t.TempDir()
	staticAlpinist(t, filepath.Join(dir, "bin"), "alpinist-x86_64")
	writeFile(t, filepath.Join(dir, "bin", "alpinist-aarch64"), "not this arch's", 0o755)
	spec := filepath.Join(dir, "image.yaml")
	qemu := regexp.MustCompile(`^(qemu-|seabios)`)
	text := imageSpec(t, realRepos(t), func(name string) bool { return !qemu.MatchString(name) })
	text = strings.Replace(text, "arch: [x86_64, aarch64]", "arch: [x86_64]", 1)
	if strings.Contains(text, "qemu-system") || !strings.Contains(text, "ca-certificates-bundle") {
		t.Fatalf("the test's spec:\n%s", text)
	}
	writeFile(t, spec, text, 0o644)
	out := filepath.Join(dir, "out")
	mustCLI(t, "build", spec, "-o", out)
	p := newPodmanStore(t, hosttool.Need(t, "podman", "podman"))
	p.load(t, filepath.Join(out, "alpinist-x86_64.docker.tar"))
	if got, err := p.inspect("alpinist:latest", "{{.Config.User}} {{.Config.Entrypoint}} {{.Config.WorkingDir}}"); err != nil || got != "alpinist [/usr/bin/alpinist] /tmp" {
		t.Errorf("podman image inspect: %v %s", err, got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b, err := p.run(ctx, "--rm", "--network", "none", "--ulimit", "host", "alpinist:latest", "version").CombinedOutput()
	if err != nil || !strings.Contains(string(b), "alpinist "+versionString()) {
		t.Errorf("podman run alpinist:latest version: %v\n%s", err, b)
	}
}
