package testrepo

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"math/rand/v2"
)

// TestVersion is the version of the generated test packages (except
// alpinist-test-versioned, which also comes as TestVersion2).
const (
	TestVersion  = "1.0.0-r0"
	TestVersion2 = "2.0.0-r0"
)

// Names of things the test packages install, for tests to rely on.
const (
	// MarkerDir is where the test packages' scripts write marker files.
	MarkerDir = "/var/lib/alpinist-test"
	// HooksDir is the directory alpinist-test-trigger watches.
	HooksDir = "/usr/share/alpinist-test/hooks"
	// LargeFile is alpinist-test-large's file, LargeSize bytes of
	// LargeContent.
	LargeFile = "/usr/share/alpinist-test/large.bin"
	LargeSize = 64 << 20
	// CapFile carries a security.capability xattr (cap_net_raw+ep).
	CapFile = "/usr/bin/alpinist-ping"
	// SharedFile is owned by both alpinist-test-owner and
	// alpinist-test-replacer (which replaces the former).
	SharedFile = "/usr/share/alpinist-test/shared.conf"

	// ServiceName is the OpenRC service alpinist-test-service installs:
	// ServiceScript (0755, #!/sbin/openrc-run) and ServiceConf (0644).
	// Started, its daemon is a backgrounded /bin/sleep with a pidfile
	// (so rc-status shows it started, not crashed) and it writes
	// ServiceMarker; stopping it kills the sleep and removes the marker.
	ServiceName    = "alpinist-test"
	ServicePackage = "alpinist-test-service"
	ServiceScript  = "/etc/init.d/" + ServiceName
	ServiceConf    = "/etc/conf.d/" + ServiceName
	ServiceMarker  = "/run/" + ServiceName + ".started"
)

// serviceScript is ServiceScript, an OpenRC service as Alpine writes them.
const serviceScript = `#!/sbin/openrc-run
# ` + ServiceName + `: the OpenRC service of alpinist's synthetic test
# repository (package ` + ServicePackage + `). Its daemon only sleeps;
# starting it writes ` + ServiceMarker + ` so a test can tell it ran.
# Settings: ` + ServiceConf + `.

description="alpinist test service (a sleeping daemon)"

command="/bin/sleep"
command_args="${ALPINIST_TEST_SLEEP:-2147483647}"
command_background=true
pidfile="/run/${RC_SVCNAME}.pid"

depend() {
	need localmount
}

start_post() {
	echo "${RC_SVCNAME} started" > "` + ServiceMarker + `"
}

stop_post() {
	rm -f "` + ServiceMarker + `"
}
`

// serviceConf is ServiceConf, which openrc-run sources before the script.
const serviceConf = `# Settings for ` + ServiceScript + ` (alpinist's test service).

# How many seconds the service's daemon (/bin/sleep) sleeps.
#ALPINIST_TEST_SLEEP=2147483647
`

// TestPackages lists the generated test packages by name (each exists for
// every architecture; alpinist-test-versioned in two versions).
var TestPackages = []string{
	"alpinist-test-scripts", "alpinist-test-trigger", "alpinist-test-hook",
	"alpinist-test-lib", "alpinist-test-hello", "alpinist-test-consumer",
	"alpinist-test-if-a", "alpinist-test-if-b", "alpinist-test-if-both",
	"alpinist-test-owner", "alpinist-test-replacer",
	"alpinist-test-conflict-a", "alpinist-test-conflict-b",
	"alpinist-test-hardlinks", "alpinist-test-xattr", "alpinist-test-emptydirs",
	"alpinist-test-large", "alpinist-test-failing",
	"alpinist-test-virt-a", "alpinist-test-virt-b",
	"alpinist-test-prio-a", "alpinist-test-prio-b",
	"alpinist-test-versioned", "alpinist-test-noarch",
	ServicePackage,
}

// LargeContent returns the deterministic pseudo-random content of
// LargeFile: a ChaCha8 stream (a sequence fixed across Go versions)
// seeded with SHA-256("alpinist-test-large"), generated as it is read.
func LargeContent() io.Reader {
	seed := sha256.Sum256([]byte("alpinist-test-large"))
	return io.LimitReader(rand.NewChaCha8(seed), LargeSize)
}

// CapNetRawEP is the security.capability value setcap writes for
// cap_net_raw+ep: a struct vfs_cap_data, revision 2, little-endian:
// magic_etc = VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE, then
// {permitted, inheritable} for capabilities 0-31 and 32-63.
func CapNetRawEP() []byte {
	const (
		vfsCapRevision2      = 0x02000000
		vfsCapFlagsEffective = 0x000001
		capNetRaw            = 13
	)
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], vfsCapRevision2|vfsCapFlagsEffective)
	binary.LittleEndian.PutUint32(b[4:], 1<<capNetRaw) // permitted, low word
	return b
}

func markerScript(what string) []byte {
	return []byte(`#!/bin/sh
mkdir -p ` + MarkerDir + `
if [ -e /usr/share/alpinist-test/scripts/payload ]; then state=present; else state=absent; fi
echo "` + what + ` $1 payload=$state" > ` + MarkerDir + `/scripts.` + what + `
exit 0
`)
}

// buildTestPackages makes the small generated packages that each
// exercise one apk feature (see the package documentation).
func buildTestPackages(ctx context.Context, b *builder) ([]*Pkg, error) {
	t := &testPkgs{arch: b.arch}
	t.scriptPkgs()
	t.relationPkgs()
	t.filePkgs()
	t.choicePkgs()
	t.servicePkg()
	return t.pkgs, nil
}

// testPkgs collects the test packages, in order, for one architecture.
type testPkgs struct {
	arch string
	pkgs []*Pkg
}

// add starts a test package of TestVersion.
func (t *testPkgs) add(name, desc string) *Pkg {
	p := newPkg(name, TestVersion, t.arch, desc, "MIT")
	t.pkgs = append(t.pkgs, p)
	return p
}

// txt is a file's content: s and a newline.
func txt(s string) []byte { return []byte(s + "\n") }

// scriptPkgs adds the packages with install scripts and triggers, and
// the one that fires the trigger.
func (t *testPkgs) scriptPkgs() {
	p := t.add("alpinist-test-scripts", "pre-install and post-install scripts writing marker files")
	p.Meta.Depends = deps("/bin/sh")
	must(p.Tree.File("usr/share/alpinist-test/scripts/payload", 0o644, txt("payload of alpinist-test-scripts")))
	p.Scripts["pre-install"] = markerScript("pre-install")
	p.Scripts["post-install"] = markerScript("post-install")

	p = t.add("alpinist-test-trigger", "a trigger on "+HooksDir)
	p.Meta.Depends = deps("/bin/sh")
	p.Meta.Triggers = []string{HooksDir}
	must(p.Tree.Dir(HooksDir[1:], 0o755, 0, 0))
	p.Scripts["trigger"] = []byte(`#!/bin/sh
mkdir -p ` + MarkerDir + `
echo "trigger $*" >> ` + MarkerDir + `/trigger.log
exit 0
`)

	p = t.add("alpinist-test-hook", "installs a file into "+HooksDir+", firing alpinist-test-trigger")
	must(p.Tree.File(HooksDir[1:]+"/alpinist-test-hook.hook", 0o644, txt("hook")))
}

// relationPkgs adds the packages related to others: shared-library and
// command providers and users, install_if, replaces and conflicts.
func (t *testPkgs) relationPkgs() {
	p := t.add("alpinist-test-lib", "provides so:libalpinisttest.so.1")
	p.Meta.Provides = deps("so:libalpinisttest.so.1=1.0.0")
	must(p.Tree.File("usr/lib/libalpinisttest.so.1.0.0", 0o755, txt("not really a shared library")))
	must(p.Tree.Symlink("usr/lib/libalpinisttest.so.1", "libalpinisttest.so.1.0.0"))

	p = t.add("alpinist-test-hello", "provides cmd:alpinist-hello")
	p.Meta.Depends = deps("/bin/sh", "so:libalpinisttest.so.1")
	p.Meta.Provides = deps("cmd:alpinist-hello=" + TestVersion)
	must(p.Tree.File("usr/bin/alpinist-hello", 0o755, []byte("#!/bin/sh\necho hello from alpinist\n")))

	p = t.add("alpinist-test-consumer", "depends on so:libalpinisttest.so.1 and cmd:alpinist-hello")
	p.Meta.Depends = deps("cmd:alpinist-hello", "so:libalpinisttest.so.1")
	must(p.Tree.File("usr/share/alpinist-test/consumer.txt", 0o644, txt("consumer")))

	p = t.add("alpinist-test-if-a", "one of the two packages that pull in alpinist-test-if-both")
	must(p.Tree.File("usr/share/alpinist-test/if-a.txt", 0o644, txt("a")))
	p = t.add("alpinist-test-if-b", "one of the two packages that pull in alpinist-test-if-both")
	must(p.Tree.File("usr/share/alpinist-test/if-b.txt", 0o644, txt("b")))
	p = t.add("alpinist-test-if-both", "install_if alpinist-test-if-a and alpinist-test-if-b")
	p.Meta.InstallIf = deps("alpinist-test-if-a", "alpinist-test-if-b")
	must(p.Tree.File("usr/share/alpinist-test/if-both.txt", 0o644, txt("both")))

	p = t.add("alpinist-test-owner", "owns "+SharedFile+"; alpinist-test-replacer replaces it")
	must(p.Tree.File(SharedFile[1:], 0o644, txt("from alpinist-test-owner")))
	p = t.add("alpinist-test-replacer", "owns "+SharedFile+" too, replacing alpinist-test-owner")
	p.Meta.Replaces = deps("alpinist-test-owner")
	must(p.Tree.File(SharedFile[1:], 0o644, txt("from alpinist-test-replacer")))

	p = t.add("alpinist-test-conflict-a", "conflicts with alpinist-test-conflict-b (!alpinist-test-conflict-b)")
	p.Meta.Depends = deps("!alpinist-test-conflict-b")
	must(p.Tree.File("usr/share/alpinist-test/conflict-a.txt", 0o644, txt("a")))
	p = t.add("alpinist-test-conflict-b", "the package alpinist-test-conflict-a conflicts with")
	must(p.Tree.File("usr/share/alpinist-test/conflict-b.txt", 0o644, txt("b")))
}

// filePkgs adds the packages with special files: hard links, an xattr,
// empty directories, a large file, and one whose script fails after its
// file is in place.
func (t *testPkgs) filePkgs() {
	p := t.add("alpinist-test-hardlinks", "hard links within a directory and across directories")
	must(p.Tree.File("usr/share/alpinist-test/hardlinks/a", 0o644, txt("one inode, three names")))
	must(p.Tree.Hardlink("usr/share/alpinist-test/hardlinks/b", "usr/share/alpinist-test/hardlinks/a"))
	must(p.Tree.Hardlink("usr/share/alpinist-test/hardlinks/c", "usr/share/alpinist-test/hardlinks/a"))
	must(p.Tree.File("usr/bin/alpinist-hardlink", 0o755, []byte("#!/bin/sh\necho hardlinked\n")))
	must(p.Tree.Hardlink("usr/sbin/alpinist-hardlink", "usr/bin/alpinist-hardlink"))

	p = t.add("alpinist-test-xattr", CapFile+" with security.capability cap_net_raw+ep")
	must(p.Tree.File(CapFile[1:], 0o755, []byte("#!/bin/sh\necho capable\n")))
	must(p.Tree.SetXattr(CapFile[1:], "security.capability", CapNetRawEP()))

	p = t.add("alpinist-test-emptydirs", "empty directories with various modes")
	must(p.Tree.Dir("usr/share/alpinist-test/empty", 0o755, 0, 0))
	must(p.Tree.Dir("usr/share/alpinist-test/empty-nested/a/b/c", 0o755, 0, 0))
	must(p.Tree.Dir("var/lib/alpinist-test-empty/private", 0o700, 0, 0))
	must(p.Tree.Dir("var/lib/alpinist-test-empty/sticky", 0o1777, 0, 0))
	must(p.Tree.Dir("var/lib/alpinist-test-empty/setgid", 0o2775, 0, 42))

	p = t.add("alpinist-test-large", "a 64 MiB file of pseudo-random data")
	must(p.Tree.StreamFile(LargeFile[1:], 0o644, LargeSize, func() (io.ReadCloser, error) {
		return io.NopCloser(LargeContent()), nil
	}))

	p = t.add("alpinist-test-failing", "a post-install script that fails (exit 1)")
	p.Meta.Depends = deps("/bin/sh")
	must(p.Tree.File("usr/share/alpinist-test/failing.txt", 0o644, txt("installed before the failing script")))
	p.Scripts["post-install"] = []byte("#!/bin/sh\necho 'alpinist-test-failing: post-install fails on purpose' >&2\nexit 1\n")
}

// choicePkgs adds the packages the solver chooses among: providers of a
// virtual, provider priorities, two versions, and a noarch package.
func (t *testPkgs) choicePkgs() {
	p := t.add("alpinist-test-virt-a", "provides the virtual alpinist-test-virtual (as does alpinist-test-virt-b)")
	p.Meta.Provides = deps("alpinist-test-virtual")
	must(p.Tree.File("usr/share/alpinist-test/virt-a.txt", 0o644, txt("a")))
	p = t.add("alpinist-test-virt-b", "provides the virtual alpinist-test-virtual (as does alpinist-test-virt-a)")
	p.Meta.Provides = deps("alpinist-test-virtual")
	must(p.Tree.File("usr/share/alpinist-test/virt-b.txt", 0o644, txt("b")))

	p = t.add("alpinist-test-prio-a", "provides alpinist-test-prio with provider_priority 10")
	p.Meta.Provides = deps("alpinist-test-prio")
	p.Meta.ProviderPriority, p.Meta.HasProviderPriority = 10, true
	must(p.Tree.File("usr/share/alpinist-test/prio-a.txt", 0o644, txt("a")))
	p = t.add("alpinist-test-prio-b", "provides alpinist-test-prio with provider_priority 20 (preferred)")
	p.Meta.Provides = deps("alpinist-test-prio")
	p.Meta.ProviderPriority, p.Meta.HasProviderPriority = 20, true
	must(p.Tree.File("usr/share/alpinist-test/prio-b.txt", 0o644, txt("b")))

	for _, v := range []string{TestVersion, TestVersion2} {
		p := newPkg("alpinist-test-versioned", v, t.arch, "comes in two versions, "+TestVersion+" and "+TestVersion2, "MIT")
		must(p.Tree.File("usr/share/alpinist-test/versioned.txt", 0o644, txt(v)))
		t.pkgs = append(t.pkgs, p)
	}

	p = t.add("alpinist-test-noarch", "an architecture-independent (noarch) package")
	p.Meta.Arch = "noarch"
	must(p.Tree.File("usr/share/alpinist-test/noarch.txt", 0o644, txt("noarch")))
}

// servicePkg adds the OpenRC service package.
func (t *testPkgs) servicePkg() {
	p := t.add(ServicePackage, "an OpenRC service, "+ServiceName+" ("+ServiceScript+", "+ServiceConf+")")
	must(p.Tree.File(ServiceScript[1:], 0o755, []byte(serviceScript)))
	must(p.Tree.File(ServiceConf[1:], 0o644, []byte(serviceConf)))
}
