package solver

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/alpinist/alpinist/apk"
)

// largeRepos generates two repositories shaped like Alpine's main and
// community with about n packages in all: musl and busybox, alpine-base
// and its dependencies, libraries providing so: names, programs providing
// cmd: names, and -doc and -openrc subpackages installed through
// install_if.
func largeRepos(n int) []Repository {
	rng := rand.New(rand.NewSource(99))
	sum := func() []byte {
		b := make([]byte, 20)
		rng.Read(b)
		return b
	}
	mk := func(name, ver string, deps, provides, iif []string) *apk.Package {
		p := &apk.Package{Name: name, Version: ver, Arch: "x86_64", Size: 1000, InstalledSize: 4096, Checksum: sum()}
		parse := func(ss []string) []apk.Dependency {
			var out []apk.Dependency
			for _, s := range ss {
				d, err := apk.ParseDependency(s)
				if err != nil {
					panic(fmt.Sprintf("%s: %v", s, err))
				}
				out = append(out, d)
			}
			return out
		}
		p.Depends, p.Provides, p.InstallIf = parse(deps), parse(provides), parse(iif)
		return p
	}
	libc := "so:libc.musl-x86_64.so.1"
	main := []*apk.Package{
		mk("musl", "1.2.5-r0", nil, []string{libc + "=1"}, nil),
		mk("musl-utils", "1.2.5-r0", []string{libc}, []string{"cmd:getconf=1.2.5-r0", "cmd:ldd=1.2.5-r0"}, nil),
		mk("busybox", "1.36.1-r29", []string{libc}, []string{"cmd:busybox=1.36.1-r29"}, nil),
		mk("busybox-binsh", "1.36.1-r29", []string{"busybox=1.36.1-r29"}, []string{"/bin/sh", "cmd:sh=1.36.1-r29"}, nil),
		mk("busybox-suid", "1.36.1-r29", []string{"busybox=1.36.1-r29", libc}, nil, nil),
		mk("busybox-openrc", "1.36.1-r29", nil, nil, []string{"busybox=1.36.1-r29", "openrc"}),
		mk("busybox-mdev-openrc", "1.36.1-r29", []string{"openrc>=0.24.1-r6", "mdev-conf"}, nil, nil),
		mk("mdev-conf", "4.7-r0", nil, nil, nil),
		mk("alpine-baselayout", "3.6.5-r0", []string{"alpine-baselayout-data=3.6.5-r0", "/bin/sh"}, nil, nil),
		mk("alpine-baselayout-data", "3.6.5-r0", nil, nil, nil),
		mk("alpine-release", "3.20.3-r0", []string{"alpine-keys"}, nil, nil),
		mk("alpine-keys", "2.4-r1", nil, nil, nil),
		mk("alpine-conf", "3.18.1-r0", []string{"openrc", "/bin/sh", libc}, []string{"cmd:setup-alpine=3.18.1-r0"}, nil),
		mk("alpine-conf-openrc", "3.18.1-r0", nil, nil, []string{"alpine-conf=3.18.1-r0", "openrc"}),
		mk("openrc", "0.54-r1", []string{"ifupdown-any", "so:libcap.so.2", libc}, []string{"cmd:openrc=0.54-r1"}, nil),
		mk("ifupdown-ng", "0.12.1-r5", []string{libc}, []string{"ifupdown-any"}, nil),
		mk("libcap2", "2.70-r0", []string{libc}, []string{"so:libcap.so.2=2.70"}, nil),
		mk("apk-tools", "2.14.4-r1", []string{"so:libcrypto.so.3", "so:libssl.so.3", "so:libz.so.1", libc}, []string{"cmd:apk=2.14.4-r1"}, nil),
		mk("libcrypto3", "3.3.2-r0", []string{libc}, []string{"so:libcrypto.so.3=3"}, nil),
		mk("libssl3", "3.3.2-r0", []string{"so:libcrypto.so.3", libc}, []string{"so:libssl.so.3=3"}, nil),
		mk("zlib", "1.3.1-r1", []string{libc}, []string{"so:libz.so.1=1.3.1"}, nil),
		mk("alpine-base", "3.20.3-r0", []string{"alpine-baselayout", "alpine-conf", "alpine-release", "apk-tools", "busybox", "busybox-mdev-openrc", "busybox-openrc", "busybox-suid", "musl-utils", "openrc"}, nil, nil),
		mk("docs", "0.2-r6", nil, nil, nil),
		mk("man-pages", "6.9.1-r0", nil, nil, nil),
	}
	for _, p := range main {
		// virtual providers Alpine gives a provider_priority
		if p.Name == "busybox-binsh" || p.Name == "ifupdown-ng" {
			p.ProviderPriority, p.HasProviderPriority = 100, true
		}
	}
	var community []*apk.Package
	var libs []string
	for i := 0; len(main)+len(community) < n; i++ {
		repo := &main
		if i%3 != 0 {
			repo = &community
		}
		ver := fmt.Sprintf("%d.%d.%d-r%d", 1+rng.Intn(5), rng.Intn(20), rng.Intn(10), rng.Intn(4))
		deps := []string{libc}
		for j, k := 0, rng.Intn(5); j < k && len(libs) > 0; j++ {
			deps = append(deps, libs[rng.Intn(len(libs))])
		}
		if i%2 == 0 {
			name := fmt.Sprintf("lib%d", i)
			so := fmt.Sprintf("so:lib%d.so.%d", i, rng.Intn(3))
			*repo = append(*repo, mk(name, ver, deps, []string{so + "=" + ver[:3]}, nil))
			libs = append(libs, so)
			continue
		}
		name := fmt.Sprintf("app%d", i)
		*repo = append(*repo,
			mk(name, ver, deps, []string{fmt.Sprintf("cmd:app%d=%s", i, ver)}, nil),
			mk(name+"-doc", ver, nil, nil, []string{"docs", name + "=" + ver}),
			mk(name+"-openrc", ver, nil, nil, []string{"openrc", name + "=" + ver}))
	}
	return []Repository{
		{Name: "main", Packages: main},
		{Name: "community", Packages: community},
	}
}

func largeWorld(t testing.TB) []apk.Dependency {
	return parseWorld(t, []string{"busybox", "alpine-base"})
}

// TestLargeRepository solves alpine-base against a 20k-package index and
// checks the solution.
func TestLargeRepository(t *testing.T) {
	repos := largeRepos(20000)
	s, err := New(repos, Options{})
	if err != nil {
		t.Fatal(err)
	}
	world := largeWorld(t)
	ins, err := s.Solve(world)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkSolution(s, world, ins); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, in := range ins {
		got[in.Package.Name] = true
	}
	for _, want := range []string{"musl", "busybox", "alpine-base", "openrc", "busybox-openrc", "alpine-conf-openrc", "apk-tools", "libcrypto3", "busybox-binsh"} {
		if !got[want] {
			t.Errorf("%s not installed: %v", want, ins)
		}
	}
	if len(ins) != 22 {
		t.Errorf("%d packages installed, want 22: %v", len(ins), ins)
	}
}

// BenchmarkSolve resolves busybox and alpine-base against a generated
// 20000-package index (indexed once, outside the loop).
func BenchmarkSolve(b *testing.B) {
	s, err := New(largeRepos(20000), Options{})
	if err != nil {
		b.Fatal(err)
	}
	world := largeWorld(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Solve(world); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNew indexes a generated 20000-package repository set.
func BenchmarkNew(b *testing.B) {
	repos := largeRepos(20000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New(repos, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
