package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
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

// podRootfs writes the tar of a minimal image that runs alpinist's
// build VMs: the static alpinist, this host's qemu-system-x86_64 and
// qemu-system-aarch64 with the libraries ldd names and QEMU's firmware
// directories, /etc/passwd with the user alpinist (65532), /tmp.
func podRootfs(t *testing.T, alpinist, out string) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	seen := map[string]bool{}
	var dir func(p string, mode int64)
	dir = func(p string, mode int64) {
		if p == "/" || p == "." || seen[p] {
			return
		}
		dir(filepath.Dir(p), 0o755)
		seen[p] = true
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(p, "/") + "/", Mode: mode}); err != nil {
			t.Fatal(err)
		}
	}
	file := func(dst string, mode int64, data []byte) {
		if seen[dst] {
			return
		}
		dir(filepath.Dir(dst), 0o755)
		seen[dst] = true
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(dst, "/"), Mode: mode, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	// hostFile copies a host file, its links followed, to the same path.
	hostFile := func(p string) {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		file(p, int64(fi.Mode().Perm()), data)
	}
	data, err := os.ReadFile(alpinist)
	if err != nil {
		t.Fatal(err)
	}
	file("/usr/bin/alpinist", 0o755, data)
	lib := regexp.MustCompile(`(?m)(/\S+) \(0x[0-9a-f]+\)$`)
	// libs copies the libraries ldd says a binary needs.
	libs := func(bin string) {
		out, err := exec.Command("ldd", bin).Output()
		if err != nil {
			t.Fatalf("ldd %s: %v", bin, err)
		}
		for _, m := range lib.FindAllStringSubmatch(string(out), -1) {
			hostFile(m[1])
		}
	}
	for _, q := range []string{"qemu-system-x86_64", "qemu-system-aarch64"} {
		bin := hosttool.Need(t, q, "qemu-system-x86")
		hostFile(bin)
		libs(bin)
	}
	// QEMU's firmware, and its modules (Debian's loads TCG's from there).
	modules, _ := filepath.Glob("/usr/lib/*-linux-gnu/qemu")
	for _, d := range append([]string{"/usr/share/qemu", "/usr/share/seabios", "/usr/lib/ipxe/qemu"}, modules...) {
		filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				hostFile(p)
				if strings.HasSuffix(p, ".so") {
					libs(p)
				}
			}
			return nil
		})
	}
	file("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nalpinist:x:65532:65532:alpinist:/tmp:/sbin/nologin\n"))
	file("/etc/group", 0o644, []byte("root:x:0:\nalpinist:x:65532:\n"))
	dir("/tmp", 0o1777)
	dir("/var/cache/alpinist", 0o1777)
	dir("/etc/alpinist/fleet", 0o755)
	dir("/repo", 0o755)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
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

	// The image: assembled by alpinist from a rootfs tar.
	alp := staticAlpinist(t, work, "alpinist")
	rootfs := filepath.Join(work, "pod.tar")
	podRootfs(t, alp, rootfs)
	mustCLI(t, "assemble", rootfs, "-o", filepath.Join(work, "img"), "--output", "docker-archive", "--name", "alpinist-pod", "--arch", "x86_64")
	root := t.TempDir()
	store := []string{"--root", filepath.Join(root, "storage"), "--runroot", filepath.Join(root, "run"), "--storage-driver", "vfs", "--events-backend", "none"}
	archive, _ := filepath.Glob(filepath.Join(work, "img", "*.docker.tar"))
	if len(archive) != 1 {
		t.Fatalf("docker-archive: %v", archive)
	}
	b, err := exec.Command(podman, append(store, "load", "-i", archive[0])...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman load: %v\n%s", err, b)
	}
	image := strings.TrimSpace(string(b[bytes.LastIndex(b, []byte("Loaded image: "))+len("Loaded image: "):]))

	// The plan and the spec, as the ConfigMap gives them.
	plan := filepath.Join(work, "fleet")
	writeFile(t, filepath.Join(plan, "pod.yaml"), "name: pod\narch: [x86_64]\nrepositories: [/repo/main]\nkeys: [/repo/keys/]\npackages: [busybox, alpine-baselayout]\n", 0o644)
	writeFile(t, filepath.Join(plan, "plan.json"), `{"version":1,"run":"pod1","matrix":"fleet.yaml","registry":"`+host+`","cache":"`+host+`/alpinist-cache","tag":"latest","insecure":true,"arch":["x86_64","aarch64"],"jobs":[{"name":"tcg","nodeArch":"amd64","kvm":false,"entries":[{"spec":"pod.yaml","name":"pod","arch":"x86_64"},{"spec":"pod.yaml","name":"pod","arch":"aarch64"}]}]}`, 0o644)

	conf := filepath.Join(root, "containers.conf")
	writeFile(t, conf, "[containers]\ndefault_ulimits = []\n", 0o644)
	args := append(store, "--cgroup-manager", "cgroupfs")
	if _, err := exec.LookPath("runc"); err == nil {
		args = append(args, "--runtime", "runc")
	}
	for index := range 2 {
		run := append(args, "run", "--rm", "--network", "host", "--ulimit", "host",
			"--read-only", "--user", "65532:65532",
			"--mount", "type=tmpfs,destination=/tmp,tmpfs-mode=1777",
			"--mount", "type=tmpfs,destination=/var/cache/alpinist,tmpfs-mode=1777",
			"-v", plan+":/etc/alpinist/fleet:ro", "-v", repoDir+":/repo:ro",
			"-e", "ALPINIST_CACHE=/var/cache/alpinist", "-e", "TMPDIR=/tmp", "-e", "HOME=/tmp",
			"-e", fmt.Sprintf("JOB_COMPLETION_INDEX=%d", index),
			"--entrypoint", "/usr/bin/alpinist", image,
			"fleet", "worker", "/etc/alpinist/fleet/plan.json", "--job", "tcg")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		cmd := exec.CommandContext(ctx, podman, run...)
		cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+conf)
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
