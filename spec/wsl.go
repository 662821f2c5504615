package spec

import (
	"maps"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// WSL is /etc/wsl.conf of the wsl output, by section and key, as
// Microsoft documents it (https://learn.microsoft.com/windows/wsl/wsl-config).
type WSL map[string]map[string]string

// wslKeys are the sections and keys of wsl.conf, and whether each is a
// boolean.
var wslKeys = map[string]map[string]bool{
	"boot":      {"systemd": true, "command": false, "protectBinfmt": true},
	"automount": {"enabled": true, "mountFsTab": true, "root": false, "options": false},
	"network":   {"generateHosts": true, "generateResolvConf": true, "hostname": false},
	"interop":   {"enabled": true, "appendWindowsPath": true},
	"user":      {"default": false},
	"gpu":       {"enabled": true},
	"time":      {"useWindowsTimezone": true},
}

// wslSections is the order wsl.conf lists its sections in.
var wslSections = []string{"boot", "automount", "network", "interop", "user", "gpu", "time"}

func (p *parser) wsl(v *yaml.Node, s *Spec) {
	s.WSL = WSL{}
	if v.Kind != yaml.MappingNode {
		p.errorf(v, "wsl: expected a mapping of wsl.conf sections (%s)", strings.Join(wslSections, ", "))
		return
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, sec := v.Content[i], v.Content[i+1]
		keys, ok := wslKeys[k.Value]
		if !ok {
			p.errorf(k, "wsl: unknown wsl.conf section %q (known: %s)", k.Value, strings.Join(wslSections, ", "))
			continue
		}
		if _, dup := s.WSL[k.Value]; dup {
			p.errorf(k, "wsl: section %s given twice", k.Value)
			continue
		}
		field := "wsl." + k.Value
		m := p.stringMap(sec, field, nil, "")
		if m == nil {
			continue
		}
		for i := 0; i+1 < len(sec.Content); i += 2 {
			kn, vn := sec.Content[i], sec.Content[i+1]
			isBool, ok := keys[kn.Value]
			switch {
			case !isBool && vn.Kind == yaml.ScalarNode && hasControl(vn.Value):
				// A newline would add a line to wsl.conf: another key.
				p.errorf(vn, "%s.%s: one line, without newlines or control characters", field, kn.Value)
				delete(m, kn.Value)
			case !ok:
				p.errorf(kn, "%s: unknown key %q (known: %s)", field, kn.Value, strings.Join(slices.Sorted(maps.Keys(keys)), ", "))
				delete(m, kn.Value)
			case isBool && vn.Kind == yaml.ScalarNode:
				if p.boolean(vn, field+"."+kn.Value) {
					m[kn.Value] = "true"
				} else {
					m[kn.Value] = "false"
				}
			}
		}
		s.WSL[k.Value] = m
	}
}

// Conf is the wsl.conf text: sections in Microsoft's order, keys sorted.
func (w WSL) Conf() []byte {
	var b strings.Builder
	b.WriteString("# /etc/wsl.conf, written by alpinist from the spec's wsl section.\n")
	for _, sec := range wslSections {
		keys, ok := w[sec]
		if !ok || len(keys) == 0 {
			continue
		}
		b.WriteString("\n[" + sec + "]\n")
		for _, k := range slices.Sorted(maps.Keys(keys)) {
			b.WriteString(k + " = " + wslValue(keys[k]) + "\n")
		}
	}
	return []byte(b.String())
}

// wslValue quotes a value with spaces or INI's special characters.
func wslValue(v string) string {
	if strings.ContainsAny(v, " \t;#=\"") {
		return `"` + strings.ReplaceAll(v, `"`, `\"`) + `"`
	}
	return v
}
