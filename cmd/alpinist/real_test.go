package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alpinist/alpinist/internal/testkit/hosttool"
	"github.com/alpinist/alpinist/internal/testkit/minirootfs"
	"github.com/alpinist/alpinist/internal/testkit/vmtest"
	"github.com/alpinist/alpinist/internal/treecmp"
	"github.com/alpinist/alpinist/spec"
)

// realServer is the real v3.19 server set the builds are compared on.
var realServer = []string{"alpine-base", "openssh", "chrony", "e2fsprogs", "doas", "tiny-cloud-nocloud"}

// realRepos is the spec's repositories and keys for Alpine's real v3.19
// packages, with the test repository as the "@kit" repository that
// gives the kernel and boot loaders (Alpine's own are not in the
// fixtures).
func realRepos(t *testing.T) string {
	t.Helper()
	real := minirootfs.Real(t)
	kit, err := filepath.Abs(filepath.Join(generatedRepo(t), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("repositories:\n  - %s\n  - \"@kit %s/main\"\nkeys: [%s, %s/keys]\n",
		filepath.Join(real, "repos", "v3.19"), kit, filepath.Join(real, "keys"), kit)
}

// TestRealAlpineBuild builds the real v3.19 server set as a container
// rootfs in the build VM, with our installer and with Alpine's apk-tools
// (the 3.19.4 minirootfs's apk in the VM), and compares each tar with
// what Alpine's apk makes on the host from the same packages: every
// path, type, mode, owner, link, content, hard link, xattr and device.
// Only the spec's keys and repositories may differ.
func TestRealAlpineBuild(t *testing.T) {
	minirootfs.CanChroot(t)
	vmtest.Binary(t, "x86_64")
	real := minirootfs.Real(t)
	repos := realRepos(t)
	ref := filepath.Join(t.TempDir(), "ref")
	out, err := minirootfs.HostApk(minirootfs.RealDir(t, "3.19.4", "x86_64"), append([]string{"add", "--root", ref, "--initdb",
		"--no-network", "--no-cache", "--repository", filepath.Join(real, "repos", "v3.19"), "--keys-dir", filepath.Join(real, "keys")}, realServer...)...)
	if err != nil {
		t.Fatalf("apk add: %v\n%s", err, out)
	}
	want, err := treecmp.ReadDir(ref)
	if err != nil {
		t.Fatal(err)
	}
	for _, installer := range []string{"alpinist", "apk-tools"} {
		t.Run(installer, func(t *testing.T) {
			dir := t.TempDir()
			spec := filepath.Join(dir, "real.yaml")
			text := "name: real\narch: x86_64\n" + repos + "packages: [" + strings.Join(realServer, ", ") + "]\noutputs: [tar]\n"
			if installer == "apk-tools" {
				text += "installer: {type: apk-tools, minirootfs: " + filepath.Join(real, "minirootfs", "alpine-minirootfs-3.19.4-x86_64.tar.gz") + "}\n"
			}
			writeFile(t, spec, text, 0o644)
			mustCLI(t, "build", spec, "-o", filepath.Join(dir, "out"), "--cache", filepath.Join(dir, "cache"))
			f, err := os.Open(filepath.Join(dir, "out", "real-x86_64.tar"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := treecmp.ReadTar(f)
			if err != nil {
				t.Fatal(err)
			}
			// etc/shadow differs only by the root lock (checked below).
			allowed := func(rel string) bool {
				return rel == "etc/apk/repositories" || rel == "etc/apk/keys" || strings.HasPrefix(rel, "etc/apk/keys/") || rel == "etc/shadow"
			}
			if d := treecmp.Diff(want, got, allowed); len(d) > 0 {
				t.Errorf("%d differences from Alpine's apk:\n%s", len(d), strings.Join(d, "\n"))
			}
			_, files := tarIndex(t, filepath.Join(dir, "out", "real-x86_64.tar"), "etc/shadow")
			shadow := files["etc/shadow"]
			refShadow, err := os.ReadFile(filepath.Join(ref, "etc/shadow"))
			if err != nil {
				t.Fatal(err)
			}
			if locked := strings.Replace(string(refShadow), "root:::", "root:*::", 1); string(shadow) != locked || locked == string(refShadow) {
				t.Errorf("etc/shadow is not apk's with root locked:\n%s\nwant:\n%s", shadow, locked)
			}
		})
	}
}

// TestRealAlpineVM builds a real Alpine 3.19 VM (Alpine's own packages,
// the kit's kernel and boot loaders) as raw, qcow2 and a live ISO, boots
// the disk with the BIOS and with UEFI to "alpine-real login:" with sshd
// and chronyd started and eth0 up by DHCP, and logs in over SSH (alpinist
// run --forward) with the key the spec gives its user; then the live ISO
// the same way.
func TestRealAlpineVM(t *testing.T) {
	vmtest.Binary(t, "x86_64")
	firmware(t, "x86_64")
	sshBin := hosttool.Need(t, "ssh", "openssh-client")
	keygen := hosttool.Need(t, "ssh-keygen", "openssh-client")
	dir := t.TempDir()
	key := filepath.Join(dir, "id")
	if b, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "alice@test", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, b)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(dir, "real.yaml")
	writeFile(t, spec, "name: real\narch: x86_64\n"+realRepos(t)+`packages: [alpine-base, openssh, chrony, linux-virt@kit]
hostname: alpine-real
users:
  - {name: alice, groups: [wheel], ssh_authorized_keys: ["`+strings.TrimSpace(string(pub))+`"]}
services:
  default: [sshd, chronyd]
disk: {}
outputs: [raw, qcow2, iso]
`, 0o644)
	out := filepath.Join(dir, "out")
	mustCLI(t, "build", spec, "-o", out, "--cache", filepath.Join(dir, "cache"))
	raw, img := filepath.Join(out, "real-x86_64.raw"), filepath.Join(out, "real-x86_64.qcow2")
	checkDisk(t, raw, img)

	// BIOS: the console shows the services a real Alpine starts.
	code, console, errs := cli(t, "run", img, "--bios", "--until", "alpine-real login:", "--timeout", "6m")
	if code != 0 {
		t.Fatalf("alpinist run --bios: exit %d: %s\n%s", code, errs, console)
	}
	for _, want := range []string{"SYSLINUX 6.04", "Setting hostname ... [ ok ]", "lease of 10.0.2.15 obtained", "Starting chronyd ... [ ok ]",
		"Starting sshd ... [ ok ]", "Welcome to Alpine Linux 3.19"} {
		if !strings.Contains(console, want) {
			t.Errorf("the BIOS boot's console lacks %q:\n%s", want, console)
		}
	}
	// A failed service shows "[ !! ]". One is the kit's kernel's, not
	// ours: Debian's cloud kernel has no uevent helper
	// (CONFIG_UEVENT_HELPER, which Alpine's linux-virt has), so mdev's
	// start cannot write /proc/sys/kernel/hotplug.
	kit := "Starting busybox mdev .../lib/rc/sh/openrc-run.sh: line 15: can't create /proc/sys/kernel/hotplug: nonexistent directory\n [ !! ]"
	if plain := strings.ReplaceAll(console, "\r", ""); strings.Count(plain, "[ !! ]") != strings.Count(plain, kit) {
		t.Errorf("a service failed at boot:\n%s", console)
	}

	// UEFI, with SSH forwarded: log in with the spec's key.
	port := freePort(t)
	con := startRun(t, img, "--uefi", "--forward", fmt.Sprintf("%d:22", port))
	waitConsole(t, con, "alpine-real login:", 6*time.Minute)
	release, err := sshRun(sshBin, key, port, "alice", "cat /etc/alpine-release; hostname")
	if err != nil || release != "3.19.1\nalpine-real\n" {
		t.Fatalf("ssh alice@127.0.0.1 -p %d: %v: %q\nconsole:\n%s", port, err, release, con.String())
	}
	if !strings.Contains(con.String(), "Starting sshd ... [ ok ]") {
		t.Errorf("the UEFI boot's console:\n%s", con.String())
	}

	// The same system as a live ISO in a CD drive (UEFI: run's choice
	// for an ISO with an EFI entry): it runs from memory, its root a
	// tmpfs the agent unpacked rootfs.tar.gz into, and alice logs in.
	port = freePort(t)
	con = startRun(t, filepath.Join(out, "real-x86_64.iso"), "--forward", fmt.Sprintf("%d:22", port))
	waitConsole(t, con, "alpine-real login:", 6*time.Minute)
	live, err := sshRun(sshBin, key, port, "alice", "cat /etc/alpine-release; hostname; awk '$2 == \"/\" {print $3}' /proc/mounts")
	if err != nil || live != "3.19.1\nalpine-real\ntmpfs\n" {
		t.Fatalf("ssh to the live ISO: %v: %q\nconsole:\n%s", err, live, con.String())
	}
	for _, want := range []string{"UEFI QEMU QEMU CD-ROM", "Starting sshd ... [ ok ]", "Starting chronyd ... [ ok ]"} {
		if !strings.Contains(con.String(), want) {
			t.Errorf("the live ISO's console lacks %q:\n%s", want, con.String())
		}
	}
}

// startRun starts alpinist run on img with args, its console in the
// buffer returned; the VM is killed when the test ends.
func startRun(t *testing.T, img string, args ...string) *syncBuffer {
	t.Helper()
	var con syncBuffer
	cmd := boundedCommand(t, alpinistBinary(t), append([]string{"run", img}, args...)...)
	cmd.Stdout, cmd.Stderr = &con, &con
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM) // alpinist stops QEMU and removes its files
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return &con
}

// waitConsole waits until text is on the console.
func waitConsole(t *testing.T, con *syncBuffer, text string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(con.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q on the console within %v:\n%s", text, timeout, con.String())
		}
		time.Sleep(time.Second)
	}
}

// sshRun runs command as user over SSH on the loopback's port with
// key, trying a few times while sshd comes up.
func sshRun(sshBin, key string, port int, user, command string) (string, error) {
	var out []byte
	var err error
	for try := 0; ; try++ {
		out, err = exec.Command(sshBin, "-i", key, "-p", fmt.Sprint(port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR",
			user+"@127.0.0.1", command).CombinedOutput()
		if err == nil || try == 4 {
			return string(out), err
		}
		time.Sleep(3 * time.Second)
	}
}

// TestRealAlpineCloud builds Alpine's real v3.19 with cloud: alpine
// (tiny-cloud, NoCloud with #alpine-config user data) and boots it with
// alpinist run --cloud-init: tiny-cloud finds the cidata seed, creates
// the user the user data names with its SSH key, sets the hostname it
// names (through the seed's meta-data), and that user logs in over SSH.
func TestRealAlpineCloud(t *testing.T) {
	vmtest.Binary(t, "x86_64")
	sshBin := hosttool.Need(t, "ssh", "openssh-client")
	keygen := hosttool.Need(t, "ssh-keygen", "openssh-client")
	dir := t.TempDir()
	key := filepath.Join(dir, "id")
	if b, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "bob@test", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, b)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(dir, "cloud.yaml")
	writeFile(t, spec, "name: cloud\narch: x86_64\n"+realRepos(t)+`packages: [alpine-base, openssh, linux-virt@kit]
cloud: alpine
disk: {}
outputs: [qcow2]
`, 0o644)
	userData := filepath.Join(dir, "user-data")
	writeFile(t, userData, "#alpine-config\nhostname: cloudy\nuser:\n  name: bob\nssh_authorized_keys:\n  - "+strings.TrimSpace(string(pub))+"\n", 0o644)
	out := filepath.Join(dir, "out")
	mustCLI(t, "build", spec, "-o", out, "--cache", filepath.Join(dir, "cache"))
	img := filepath.Join(out, "cloud-x86_64.qcow2")

	port := freePort(t)
	con := startRun(t, img, "--cloud-init", userData, "--forward", fmt.Sprintf("%d:22", port))
	waitConsole(t, con, "cloudy login:", 8*time.Minute)
	got, err := sshRun(sshBin, key, port, "bob", "hostname; id -un; cat /etc/tiny-cloud.conf | grep ^CLOUD=")
	if err != nil || got != "cloudy\nbob\nCLOUD=alpine\n" {
		t.Fatalf("ssh bob@127.0.0.1 -p %d: %v: %q\nconsole:\n%s", port, err, got, con.String())
	}
	for _, want := range []string{"Tiny Cloud - boot phase", "++ set_hostname: done", "++ ssh_authorized_keys: done", "Tiny Cloud - final phase"} {
		if !strings.Contains(con.String(), want) {
			t.Errorf("the console lacks %q:\n%s", want, con.String())
		}
	}
}

// freePort is a TCP port of the loopback that is free now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestRealAlpineAarch64 holds our installer to apk-tools 2.12 on Alpine's
// real v3.13 aarch64 packages: the reference is the apk-tools mode with
// Alpine's 3.13.12 aarch64 minirootfs, its apk running natively in the
// aarch64 build VM. Corpora: alpine-base openssh e2fsprogs, and every
// package of the 65 that co-install (all but vlan, bridge, bonding and
// network-extras, which conflict with ifupdown-ng). apk 2.12 dates
// scripts.tar's entries by the clock: its times may differ, nothing
// else.
func TestRealAlpineAarch64(t *testing.T) {
	vmtest.Binary(t, "aarch64")
	real := minirootfs.Real(t)
	kit, err := filepath.Abs(filepath.Join(generatedRepo(t), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	repos := fmt.Sprintf("repositories:\n  - %s\n  - \"@kit %s/main\"\nkeys: [%s, %s/keys]\n",
		filepath.Join(real, "repos", "v3.13"), kit, filepath.Join(real, "keys"), kit)
	if n := len(minirootfs.RealPackages(t, "repos/v3.13/aarch64")); n != 65 {
		t.Fatalf("%d packages in the v3.13 aarch64 set, want 65", n)
	}
	all := minirootfs.RealPackages(t, "repos/v3.13/aarch64", "vlan", "bridge", "bonding", "network-extras")
	for _, c := range []struct {
		name  string
		world []string
	}{{"base", []string{"alpine-base", "openssh", "e2fsprogs"}}, {"all", all}} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			body := "arch: aarch64\n" + repos + "packages: [" + strings.Join(c.world, ", ") + "]\noutputs: [tar]\n"
			writeFile(t, filepath.Join(dir, "ours.yaml"), "name: ours\n"+body, 0o644)
			writeFile(t, filepath.Join(dir, "theirs.yaml"), "name: theirs\n"+body+"installer: {type: apk-tools, minirootfs: "+
				filepath.Join(real, "minirootfs", "alpine-minirootfs-3.13.12-aarch64.tar.gz")+"}\n", 0o644)
			out, cache := filepath.Join(dir, "out"), filepath.Join(dir, "cache")
			mustCLI(t, "build", filepath.Join(dir, "ours.yaml"), "-o", out, "--cache", cache)
			mustCLI(t, "build", filepath.Join(dir, "theirs.yaml"), "-o", out, "--cache", cache)
			theirs, ours := filepath.Join(out, "theirs-aarch64.tar"), filepath.Join(out, "ours-aarch64.tar")
			want, got := readTar(t, theirs), readTar(t, ours)
			const scripts = "lib/apk/db/scripts.tar"
			if d := treecmp.Diff(want, got, func(rel string) bool { return rel == scripts }); len(d) > 0 {
				t.Errorf("%d differences from apk-tools 2.12:\n%s", len(d), strings.Join(d, "\n"))
			}
			_, a := tarIndex(t, theirs, scripts)
			_, b := tarIndex(t, ours, scripts)
			if d := treecmp.Diff(readTarBytes(t, a[scripts]), readTarBytes(t, b[scripts]), nil); len(d) > 0 || len(a[scripts]) != len(b[scripts]) {
				t.Errorf("scripts.tar differs from apk-tools 2.12's, times aside:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}

func readTarBytes(t *testing.T, b []byte) treecmp.Snapshot {
	t.Helper()
	s, err := treecmp.ReadTar(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readTar(t *testing.T, p string) treecmp.Snapshot {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := treecmp.ReadTar(f)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return s
}

// TestRealAlpineClouds resolves cloud: for every cloud tiny-cloud knows
// against Alpine's own v3.19 main index: each brings tiny-cloud, its
// OpenRC services and the cloud's own package, as Alpine's images have
// them (TestRealAlpineCloud boots the alpine one).
func TestRealAlpineClouds(t *testing.T) {
	real := minirootfs.Real(t)
	dir := t.TempDir()
	for _, cloud := range spec.Clouds {
		p := filepath.Join(dir, cloud+".yaml")
		writeFile(t, p, "name: c\narch: x86_64\nrepositories: ["+filepath.Join(real, "indexes", "v3.19-main")+"]\nkeys: ["+filepath.Join(real, "keys")+"]\npackages: [alpine-base]\ncloud: "+cloud+"\n", 0o644)
		lock := mustCLI(t, "resolve", p, "--cache", filepath.Join(dir, "cache"))
		for _, want := range []string{"tiny-cloud 3.0.7-r0", "tiny-cloud-openrc 3.0.7-r0", "tiny-cloud-" + cloud + " 3.0.7-r0"} {
			if !strings.Contains(lock, want) {
				t.Errorf("cloud: %s: the lock lacks %s:\n%s", cloud, want, lock)
			}
		}
	}
}
