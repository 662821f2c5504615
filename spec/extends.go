package spec

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/alpinist/alpinist/apk"
)

// maxExtends bounds a chain of specs extending one another.
const maxExtends = 16

// loadBase reads the spec named by extends: (path, already absolute).
func (p *parser) loadBase(n *yaml.Node, path string, stack []string) (*Spec, error) {
	for _, f := range stack {
		if a, err := filepath.Abs(f); err == nil && a == path {
			return nil, &Error{File: p.file, Line: n.Line, Column: n.Column,
				Msg: fmt.Sprintf("extends: %s extends itself through %s", path, strings.Join(stack, " -> "))}
		}
	}
	if len(stack) >= maxExtends {
		return nil, &Error{File: p.file, Line: n.Line, Column: n.Column, Msg: fmt.Sprintf("extends: more than %d specs in the chain", maxExtends)}
	}
	data, err := readSpecFile(path)
	if err != nil {
		return nil, &Error{File: p.file, Line: n.Line, Column: n.Column, Msg: fmt.Sprintf("extends: %v", err)}
	}
	return parseChain(data, path, filepath.Dir(path), stack)
}

// merge applies spec s on top of base, the way docs/spec.md describes:
//   - name, hostname, timezone, installer, network and outputs: the
//     extending spec's value replaces the base's when it gives one; so
//     does arch (a spec builds the arches it names);
//   - repositories and keys: the base's, then the new ones;
//   - packages: the base's, then the new ones; a package named again
//     replaces the base's entry (to change its version constraint);
//   - groups and users: by name, an entry replaces the base's entry of
//     the same name; new names are added after the base's;
//   - services: per runlevel, the base's then the new ones;
//   - files and run: the base's entries, then the new ones;
//   - disk and oci: field by field, the extending spec's fields win; the
//     env, labels and annotations mappings merge key by key.
func merge(base, s *Spec, seen map[string]*yaml.Node) *Spec {
	out := *base
	out.Path, out.Extends, out.Warnings = s.Path, s.Extends, append(slices.Clone(base.Warnings), s.Warnings...)
	set := func(field string) bool { return seen[field] != nil }
	if set("name") {
		out.Name = s.Name
	}
	if set("arch") {
		out.Arch = s.Arch
	}
	if set("hostname") {
		out.Hostname = s.Hostname
	}
	if set("timezone") {
		out.Timezone = s.Timezone
	}
	if set("cloud") {
		out.Cloud = s.Cloud
	}
	if set("installer") {
		out.Installer = s.Installer
	}
	if set("network") {
		out.Network = s.Network
	}
	if set("outputs") {
		out.Outputs = s.Outputs
	}
	out.Repositories = appendNew(base.Repositories, s.Repositories)
	out.Keys = appendNew(base.Keys, s.Keys)
	out.Packages = slices.Clone(base.Packages)
	for _, d := range s.Packages {
		if i := slices.IndexFunc(out.Packages, func(b apk.Dependency) bool { return b.Name == d.Name }); i >= 0 {
			out.Packages[i] = d
		} else {
			out.Packages = append(out.Packages, d)
		}
	}
	out.Groups = mergeByName(base.Groups, s.Groups, func(g Group) string { return g.Name })
	out.Users = mergeByName(base.Users, s.Users, func(u User) string { return u.Name })
	if len(base.Services)+len(s.Services) > 0 {
		out.Services = map[string][]string{}
		for _, level := range Runlevels {
			if l := appendNew(base.Services[level], s.Services[level]); len(l) > 0 {
				out.Services[level] = l
			}
		}
	}
	out.Files = append(slices.Clone(base.Files), s.Files...)
	out.Run = append(slices.Clone(base.Run), s.Run...)
	if s.Disk != nil {
		d := Disk{}
		if base.Disk != nil {
			d = *base.Disk
		}
		if s.Disk.Size != 0 {
			d.Size = s.Disk.Size
		}
		if s.Disk.Table != "" {
			d.Table = s.Disk.Table
		}
		if s.Disk.Boot != nil {
			d.Boot = s.Disk.Boot
		}
		if s.Disk.Console != "" {
			d.Console = s.Disk.Console
		}
		if s.Disk.Cmdline != "" {
			d.Cmdline = s.Disk.Cmdline
		}
		if s.Disk.CompressSet {
			d.Compress, d.CompressSet = s.Disk.Compress, true
		}
		if s.Disk.SeparateBoot {
			d.SeparateBoot, d.BootSize = true, s.Disk.BootSize
		}
		out.Disk = &d
	}
	out.OCI = mergeOCI(base.OCI, s.OCI)
	if s.WSL != nil {
		// Section by section, key by key.
		w := WSL{}
		for sec, keys := range base.WSL {
			w[sec] = maps.Clone(keys)
		}
		for sec, keys := range s.WSL {
			if w[sec] == nil {
				w[sec] = map[string]string{}
			}
			maps.Copy(w[sec], keys)
		}
		out.WSL = w
	}
	return &out
}

func mergeOCI(b, s OCI) OCI {
	o := b
	if s.Entrypoint != nil {
		o.Entrypoint = s.Entrypoint
	}
	if s.Cmd != nil {
		o.Cmd = s.Cmd
	}
	o.Env = mergeMap(b.Env, s.Env)
	o.Labels = mergeMap(b.Labels, s.Labels)
	o.Annotations = mergeMap(b.Annotations, s.Annotations)
	if s.WorkDir != "" {
		o.WorkDir = s.WorkDir
	}
	if s.User != "" {
		o.User = s.User
	}
	o.ExposedPorts = appendNew(b.ExposedPorts, s.ExposedPorts)
	o.Volumes = appendNew(b.Volumes, s.Volumes)
	if s.StopSignal != "" {
		o.StopSignal = s.StopSignal
	}
	if s.Tag != "" {
		o.Tag = s.Tag
	}
	return o
}

func mergeMap(b, s map[string]string) map[string]string {
	if b == nil && s == nil {
		return nil
	}
	m := maps.Clone(b)
	if m == nil {
		m = map[string]string{}
	}
	maps.Copy(m, s)
	return m
}

// appendNew appends the elements of add that a does not hold.
func appendNew[T comparable](a, add []T) []T {
	out := slices.Clone(a)
	for _, x := range add {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

func mergeByName[T any](base, add []T, name func(T) string) []T {
	out := slices.Clone(base)
	for _, x := range add {
		if i := slices.IndexFunc(out, func(b T) bool { return name(b) == name(x) }); i >= 0 {
			out[i] = x
		} else {
			out = append(out, x)
		}
	}
	return out
}
