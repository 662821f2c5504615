package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/alpinist/alpinist/internal/testkit/hosttool"
	"github.com/alpinist/alpinist/internal/testkit/vmtest"
)

// staticAlpinist builds alpinist without cgo, as the alpinist image
// holds it, into dir/name.
func staticAlpinist(t *testing.T, dir, name string) string {
	t.Helper()
	bin := filepath.Join(dir, name)
	build := exec.Command("go", "build", "-trimpath", "-tags", "alpinist_agents", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return bin
}

// TestFleetWorkerInPod runs fleet worker as a fleet's pod runs it: in a
// container (podman), from an image alpinist assembled, as user 65532
// with a read-only root file system, the plan and specs mounted
// read-only where the ConfigMap goes, the cache and /tmp on their own
// volumes, the pod's environment, and no /dev/kvm. The worker builds its
// entry in a TCG VM, pushes the image and its result to the registry on
// loopback, and fleet assemble on the host pushes the index.
func TestFleetWorkerInPod(t *testing.T) {
	vmtest.Binary(t, "x86_64")
	podman := hosttool.Need(t, "podman", "podman")
	host := startRegistry(t)
	_, repoDir := smallSpec(t)
	work := t.TempDir()

	// The image: fleet image, with a static alpinist.
	alp := staticAlpinist(t, work, "alpinist")
	img := filepath.Join(work, "img")
	made := mustCLI(t, "fleet", "image", "-o", img, "--alpinist", alp, "--arch", "x86_64,aarch64")
	if !strings.Contains(made, "qemu: x86_64, aarch64") {
		t.Errorf("fleet image:\n%s", made)
	}
	again := mustCLI(t, "fleet", "image", "-o", filepath.Join(work, "img2"), "--alpinist", alp, "--arch", "x86_64,aarch64")
	if digestLines(made) != digestLines(again) || digestLines(made) == "" {
		t.Errorf("fleet image is not reproducible:\n%s\n%s", made, again)
	}
	pm := newPodmanStore(t, podman)
	pm.load(t, filepath.Join(img, "alpinist-x86_64.docker.tar"))
	image := "alpinist:" + versionString()
	if got, err := pm.inspect(image, "{{.Config.User}} {{.Config.Entrypoint}}"); err != nil || got != "65532:65532 [/usr/bin/alpinist]" {
		t.Errorf("podman image inspect: %v %s", err, got)
	}

	// The plan and the spec, as the ConfigMap gives them.
	plan := filepath.Join(work, "fleet")
	writeFile(t, filepath.Join(plan, "pod.yaml"), "name: pod\narch: [x86_64]\nrepositories: [/repo/main]\nkeys: [/repo/keys/]\npackages: [busybox, alpine-baselayout]\n", 0o644)
	writeFile(t, filepath.Join(plan, "plan.json"), `{"version":1,"run":"pod1","matrix":"fleet.yaml","registry":"`+host+`","cache":"`+host+`/alpinist-cache","tag":"latest","insecure":true,"arch":["x86_64","aarch64"],"jobs":[{"name":"tcg","nodeArch":"amd64","kvm":false,"entries":[{"spec":"pod.yaml","name":"pod","arch":"x86_64"},{"spec":"pod.yaml","name":"pod","arch":"aarch64"}]}]}`, 0o644)

	for index := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		cmd := pm.run(ctx, "--rm", "--network", "host", "--ulimit", "host",
			"--read-only",
			"--mount", "type=tmpfs,destination=/tmp,tmpfs-mode=1777",
			"--mount", "type=tmpfs,destination=/var/cache/alpinist,tmpfs-mode=1777",
			"-v", plan+":/etc/alpinist/fleet:ro", "-v", repoDir+":/repo:ro",
			"-e", "ALPINIST_CACHE=/var/cache/alpinist", "-e", "TMPDIR=/tmp", "-e", "HOME=/tmp",
			"-e", fmt.Sprintf("JOB_COMPLETION_INDEX=%d", index),
			image,
			"fleet", "worker", "/etc/alpinist/fleet/plan.json", "--job", "tcg")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		cancel()
		if err != nil || !strings.Contains(out.String(), "pushed: "+host+"/pod:latest-") || !strings.Contains(out.String(), "accel=tcg") {
			t.Fatalf("the worker in its pod (index %d): %v\n%s", index, err, tail(out.String(), 40))
		}
	}
	pushed := mustCLI(t, "fleet", "assemble", filepath.Join(plan, "plan.json"))
	if !strings.Contains(pushed, "pushed: "+host+"/pod:latest@sha256:") || !strings.Contains(pushed, "(x86_64, aarch64)") {
		t.Errorf("assemble after the pods:\n%s", pushed)
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// digestLines are the sha256 digests an alpinist command printed.
func digestLines(out string) string {
	return strings.Join(regexp.MustCompile(`sha256 [0-9a-f]{64}`).FindAllString(out, -1), " ")
}
