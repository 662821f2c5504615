package testrepo

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
)

// ModInfo is what a kernel module's .modinfo section says about it.
type ModInfo struct {
	Name     string   // module name (underscores)
	Path     string   // path relative to /lib/modules/KVER, as found: kernel/fs/fat/vfat.ko
	Depends  []string // hard dependencies (module names)
	SoftPre  []string // softdep pre: names (module names or aliases)
	SoftPost []string
	Aliases  []string
	// Order is the module's line number in modules.order (0 when it is
	// not listed); ModulesDep breaks ties with it as depmod does.
	Order int
}

// SetOrder numbers mods by their position in modules.order.
func SetOrder(mods map[string]*ModInfo, order []byte) {
	byPath := map[string]*ModInfo{}
	for _, m := range mods {
		byPath[m.Path] = m
	}
	for i, l := range strings.Split(string(order), "\n") {
		if m := byPath[strings.TrimSpace(l)]; m != nil {
			m.Order = i + 1
		}
	}
}

// loadOrder compares modules by modules.order position (unlisted ones
// last), then by path.
func loadOrder(a, b *ModInfo) int {
	oa, ob := a.Order, b.Order
	if oa == 0 {
		oa = 1 << 30
	}
	if ob == 0 {
		ob = 1 << 30
	}
	if oa != ob {
		return oa - ob
	}
	return strings.Compare(a.Path, b.Path)
}

// ModName normalises a module name or file name: dashes become
// underscores and a .ko[.gz|.xz|.zst] suffix is dropped.
func ModName(s string) string {
	s = path.Base(s)
	for _, ext := range []string{".gz", ".xz", ".zst"} {
		s = strings.TrimSuffix(s, ext)
	}
	s = strings.TrimSuffix(s, ".ko")
	return strings.ReplaceAll(s, "-", "_")
}

// ReadModInfo parses the .modinfo section of a .ko (uncompressed) read
// from r; relPath is its path under /lib/modules/KVER.
func ReadModInfo(r io.ReaderAt, relPath string) (*ModInfo, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("kmod: %s: %w", relPath, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("kmod: %s: no .modinfo section", relPath)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("kmod: %s: .modinfo: %w", relPath, err)
	}
	return parseModInfo(data, relPath), nil
}

func parseModInfo(data []byte, relPath string) *ModInfo {
	m := &ModInfo{Path: relPath}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			m.Name = ModName(v)
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					m.Depends = append(m.Depends, ModName(d))
				}
			}
		case "softdep":
			var cur *[]string
			for _, w := range strings.Fields(v) {
				switch w {
				case "pre:":
					cur = &m.SoftPre
				case "post:":
					cur = &m.SoftPost
				default:
					if cur != nil {
						*cur = append(*cur, w)
					}
				}
			}
		case "alias":
			m.Aliases = append(m.Aliases, v)
		}
	}
	if m.Name == "" {
		m.Name = ModName(relPath)
	}
	return m
}

// ModuleSet is a kernel's modules, by name, and its built-in modules.
type ModuleSet struct {
	Modules map[string]*ModInfo
	Builtin map[string]bool // from modules.builtin
}

// ParseBuiltin reads modules.builtin (one kernel/...ko path a line).
func ParseBuiltin(data []byte) map[string]bool {
	b := map[string]bool{}
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			b[ModName(l)] = true
		}
	}
	return b
}

// Closure returns the modules needed to load the wanted ones: each
// wanted module that is not built in, its depends= closure, and the
// softdeps (by name or exact alias) that exist as modules. A wanted name
// that is neither a module nor built in is an error unless optional
// says it may be missing. The result is sorted by path.
func (s *ModuleSet) Closure(wanted []string, optional func(name string) bool) ([]*ModInfo, error) {
	byAlias := map[string][]string{}
	for _, name := range sortedKeys(s.Modules) {
		for _, a := range s.Modules[name].Aliases {
			byAlias[a] = append(byAlias[a], name)
		}
	}
	seen := map[string]bool{}
	var visit func(name, from string, soft bool) error
	visit = func(name, from string, soft bool) error {
		name = ModName(name)
		if seen[name] {
			return nil
		}
		m, ok := s.Modules[name]
		if !ok {
			if s.Builtin[name] {
				return nil
			}
			if soft {
				for _, n := range byAlias[name] {
					if err := visit(n, from, true); err != nil {
						return err
					}
				}
				return nil
			}
			if from == "" {
				if optional != nil && optional(name) {
					return nil
				}
				return fmt.Errorf("kmod: module %s is neither a module nor built in", name)
			}
			return fmt.Errorf("kmod: module %s (needed by %s) not found", name, from)
		}
		seen[name] = true
		for _, d := range m.Depends {
			if err := visit(d, name, false); err != nil {
				return err
			}
		}
		for _, d := range append(slices.Clone(m.SoftPre), m.SoftPost...) {
			if err := visit(d, name, true); err != nil {
				return err
			}
		}
		return nil
	}
	for _, w := range wanted {
		if err := visit(w, "", false); err != nil {
			return nil, err
		}
	}
	var out []*ModInfo
	for name := range seen {
		out = append(out, s.Modules[name])
	}
	slices.SortFunc(out, func(a, b *ModInfo) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// ModulesDep writes a modules.dep for mods in depmod's format: one line
// per module, "PATH: DEP...", the dependencies transitive and listed as
// depmod lists them (modprobe loads them from the last to the first).
// rename maps a module's path to the file name it is installed under
// (e.g. adding .gz). All dependencies must be in mods.
func ModulesDep(mods []*ModInfo, rename func(string) string) ([]byte, error) {
	by := map[string]*ModInfo{}
	for _, m := range mods {
		by[m.Name] = m
	}
	// Topological order: a module after all its dependencies; ties by path.
	idx := map[string]int{}
	state := map[string]int{} // 1 visiting, 2 done
	var order []*ModInfo
	var visit func(m *ModInfo) error
	visit = func(m *ModInfo) error {
		switch state[m.Name] {
		case 1:
			return fmt.Errorf("kmod: dependency cycle through %s", m.Name)
		case 2:
			return nil
		}
		state[m.Name] = 1
		deps := slices.Clone(m.Depends)
		slices.SortFunc(deps, func(a, b string) int {
			da, db := by[a], by[b]
			if da == nil || db == nil {
				return strings.Compare(a, b)
			}
			return loadOrder(da, db)
		})
		for _, d := range deps {
			dm := by[d]
			if dm == nil {
				return fmt.Errorf("kmod: %s depends on %s, which is not in the set", m.Name, d)
			}
			if err := visit(dm); err != nil {
				return err
			}
		}
		state[m.Name] = 2
		idx[m.Name] = len(order)
		order = append(order, m)
		return nil
	}
	byOrder := slices.Clone(mods)
	slices.SortFunc(byOrder, loadOrder)
	for _, m := range byOrder {
		if err := visit(m); err != nil {
			return nil, err
		}
	}
	sorted := slices.Clone(mods)
	slices.SortFunc(sorted, func(a, b *ModInfo) int { return strings.Compare(a.Path, b.Path) })
	var buf bytes.Buffer
	for _, m := range sorted {
		all := map[string]bool{}
		var walk func(n string)
		walk = func(n string) {
			for _, d := range by[n].Depends {
				if !all[d] {
					all[d] = true
					walk(d)
				}
			}
		}
		walk(m.Name)
		deps := sortedKeys(all)
		slices.SortFunc(deps, func(a, b string) int { return idx[b] - idx[a] })
		buf.WriteString(rename(m.Path) + ":")
		for _, d := range deps {
			buf.WriteString(" " + rename(by[d].Path))
		}
		buf.WriteByte('\n')
	}
	return buf.Bytes(), nil
}

// ModulesAlias writes modules.alias lines ("alias PATTERN MODULE") for
// mods, in path order.
func ModulesAlias(mods []*ModInfo) []byte {
	var buf bytes.Buffer
	buf.WriteString("# Aliases extracted from modules themselves.\n")
	sorted := slices.Clone(mods)
	slices.SortFunc(sorted, func(a, b *ModInfo) int { return strings.Compare(a.Path, b.Path) })
	for _, m := range sorted {
		for _, a := range m.Aliases {
			fmt.Fprintf(&buf, "alias %s %s\n", a, m.Name)
		}
	}
	return buf.Bytes()
}

// FilterOrder keeps the lines of modules.order that name a module of mods.
func FilterOrder(order []byte, mods []*ModInfo) []byte {
	keep := map[string]bool{}
	for _, m := range mods {
		keep[m.Path] = true
	}
	var buf bytes.Buffer
	for _, l := range strings.Split(string(order), "\n") {
		if keep[strings.TrimSpace(l)] {
			buf.WriteString(strings.TrimSpace(l) + "\n")
		}
	}
	return buf.Bytes()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
