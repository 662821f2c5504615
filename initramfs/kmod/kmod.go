// Package kmod reads what depmod writes (modules.dep, modules.builtin),
// orders modules for loading as modprobe does, and decompresses them.
package kmod

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// ModName is a module's name from its path or name: "kernel/drivers/
// virtio/virtio-pci.ko.gz" and "virtio-pci" both give "virtio_pci".
func ModName(p string) string {
	b := path.Base(p)
	for _, ext := range []string{".gz", ".xz", ".zst"} {
		b = strings.TrimSuffix(b, ext)
	}
	b = strings.TrimSuffix(b, ".ko")
	return strings.ReplaceAll(b, "-", "_")
}

// ModulesDep is a parsed modules.dep: for each module name its path
// (relative to lib/modules/KVER) and its dependencies' paths in the
// order modprobe reads them (the last is loaded first).
type ModulesDep struct {
	Path map[string]string
	Deps map[string][]string
}

// ParseModulesDep reads depmod's modules.dep ("path: dep dep ...").
func ParseModulesDep(r io.Reader) (*ModulesDep, error) {
	md := &ModulesDep{Path: map[string]string{}, Deps: map[string][]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		p, deps, ok := strings.Cut(l, ":")
		if !ok || p == "" {
			return nil, fmt.Errorf("modules.dep: line %d: %q is not \"path: deps\"", line, l)
		}
		n := ModName(p)
		md.Path[n] = p
		md.Deps[n] = strings.Fields(deps)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("modules.dep: %w", err)
	}
	return md, nil
}

// ParseBuiltin reads modules.builtin: the names of modules built into
// the kernel.
func ParseBuiltin(data []byte) map[string]bool {
	out := map[string]bool{}
	for l := range strings.SplitSeq(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out[ModName(l)] = true
		}
	}
	return out
}

// AddBuiltinModinfo adds to builtin the modules that
// modules.builtin.modinfo names (NUL-separated "module.key=value"
// records). It lists the built-in code of bool options too, which
// modules.builtin does not: s390x's virtio_ccw (CONFIG_S390_GUEST=y).
func AddBuiltinModinfo(builtin map[string]bool, data []byte) {
	for rec := range strings.SplitSeq(string(data), "\x00") {
		if name, _, ok := strings.Cut(rec, "."); ok && name != "" && !strings.ContainsAny(name, "=/ ") {
			builtin[ModName(name)] = true
		}
	}
}

// LoadOrder returns the module paths to load for the wanted names,
// dependencies first, each once, as modprobe would load them. A wanted
// module built into the kernel is skipped; one neither built in nor in
// modules.dep is an error naming it.
func (md *ModulesDep) LoadOrder(want []string, builtin map[string]bool) ([]string, error) {
	var order []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			order = append(order, p)
		}
	}
	for _, w := range want {
		n := ModName(w)
		p, ok := md.Path[n]
		if !ok {
			if builtin[n] {
				continue
			}
			return nil, fmt.Errorf("kernel module %s is neither built in nor in modules.dep", n)
		}
		deps := md.Deps[n]
		for i := len(deps) - 1; i >= 0; i-- {
			add(deps[i])
		}
		add(p)
	}
	return order, nil
}

// Waves gives each module path of order (a LoadOrder) its wave: 0 for
// one that depends on none of the others, else one more than the
// highest wave of those it depends on. The modules of one wave may load
// at once, once every earlier wave is loaded.
func (md *ModulesDep) Waves(order []string) []int {
	pos := map[string]int{}
	for i, p := range order {
		pos[p] = i
	}
	waves := make([]int, len(order))
	for i, p := range order { // dependencies come first in order
		for _, d := range md.Deps[ModName(p)] {
			if j, ok := pos[d]; ok && j < i {
				waves[i] = max(waves[i], waves[j]+1)
			}
		}
	}
	return waves
}

// Decompress returns a module's plain .ko content, undoing the .gz, .xz
// or .zst compression its name says.
func Decompress(name string, data []byte) ([]byte, error) {
	var r io.Reader
	var err error
	switch {
	case strings.HasSuffix(name, ".ko"):
		return data, nil
	case strings.HasSuffix(name, ".ko.gz"):
		r, err = gzip.NewReader(bytes.NewReader(data))
	case strings.HasSuffix(name, ".ko.xz"):
		r, err = xz.NewReader(bytes.NewReader(data))
	case strings.HasSuffix(name, ".ko.zst"):
		var d *zstd.Decoder
		d, err = zstd.NewReader(bytes.NewReader(data))
		if err == nil {
			defer d.Close()
			r = d
		}
	default:
		return nil, fmt.Errorf("%s: not a kernel module (.ko, .ko.gz, .ko.xz or .ko.zst)", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	out, err := io.ReadAll(io.LimitReader(r, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}
