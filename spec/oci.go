package spec

import (
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// OCI is the container image configuration (the OCI image config's
// fields, and the tag a docker-archive gets).
type OCI struct {
	Entrypoint []string
	Cmd        []string
	Env        map[string]string
	WorkDir    string
	User       string
	Labels     map[string]string
	// Annotations go on the image manifest (and index).
	Annotations map[string]string
	// ExposedPorts are PORT/tcp or PORT/udp.
	ExposedPorts []string
	Volumes      []string
	StopSignal   string
	// Tag is the image reference a docker-archive carries (NAME:latest
	// when empty).
	Tag string
}

// Outputs are the output kinds a spec may ask for.
var Outputs = []string{"tar", "tar.gz", "tar.zst", "wsl", "lxc", "oci", "docker-archive", "ext4", "raw", "qcow2", "vmdk", "ova", "vhd", "iso", "gce"}

var (
	envRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	portRE   = regexp.MustCompile(`^([0-9]{1,5})(/(tcp|udp|sctp))?$`)
	signalRE = regexp.MustCompile(`^(SIG[A-Z0-9+-]+|[0-9]{1,2})$`)
	tagRE    = regexp.MustCompile(`^[a-z0-9]+([._/-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$`)
)

func (p *parser) oci(v *yaml.Node, s *Spec) {
	o := &s.OCI
	strs := func(field string, dst *[]string) func(*yaml.Node) {
		return func(v *yaml.Node) {
			for _, n := range p.list(v, "oci."+field) {
				if t := p.scalar(n, "oci."+field); t != "" {
					*dst = append(*dst, t)
				}
			}
		}
	}
	p.mapping(v, "oci", map[string]func(*yaml.Node){
		"entrypoint": strs("entrypoint", &o.Entrypoint),
		"cmd":        strs("cmd", &o.Cmd),
		"env":        func(v *yaml.Node) { o.Env = p.stringMap(v, "oci.env", envRE, "an environment variable name") },
		"workdir": func(v *yaml.Node) {
			o.WorkDir = p.scalar(v, "oci.workdir")
			if o.WorkDir != "" && !strings.HasPrefix(o.WorkDir, "/") {
				p.errorf(v, "oci.workdir: %q must be an absolute path", o.WorkDir)
			}
		},
		"user":        func(v *yaml.Node) { o.User = p.scalar(v, "oci.user") },
		"labels":      func(v *yaml.Node) { o.Labels = p.stringMap(v, "oci.labels", nil, "") },
		"annotations": func(v *yaml.Node) { o.Annotations = p.stringMap(v, "oci.annotations", nil, "") },
		"exposed_ports": func(v *yaml.Node) {
			for _, n := range p.list(v, "oci.exposed_ports") {
				t := p.scalar(n, "oci.exposed_ports")
				m := portRE.FindStringSubmatch(t)
				if m == nil || !validPort(m[1]) {
					p.errorf(n, "oci.exposed_ports: %q is not PORT, PORT/tcp or PORT/udp", t)
					continue
				}
				if !strings.Contains(t, "/") {
					t += "/tcp"
				}
				o.ExposedPorts = append(o.ExposedPorts, t)
			}
		},
		"volumes": func(v *yaml.Node) {
			for _, n := range p.list(v, "oci.volumes") {
				t := p.scalar(n, "oci.volumes")
				if !strings.HasPrefix(t, "/") {
					p.errorf(n, "oci.volumes: %q must be an absolute path", t)
					continue
				}
				o.Volumes = append(o.Volumes, t)
			}
		},
		"stop_signal": func(v *yaml.Node) {
			o.StopSignal = p.scalar(v, "oci.stop_signal")
			if !signalRE.MatchString(o.StopSignal) {
				p.errorf(v, "oci.stop_signal: %q is not a signal such as SIGTERM or 15", o.StopSignal)
			}
		},
		"tag": func(v *yaml.Node) {
			o.Tag = p.scalar(v, "oci.tag")
			if !tagRE.MatchString(o.Tag) {
				p.errorf(v, "oci.tag: %q is not an image reference such as example.org/web:1.0", o.Tag)
			}
		},
	})
}

func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535
}

// stringMap reads a mapping of strings to strings; keys must match re
// when it is given.
func (p *parser) stringMap(v *yaml.Node, field string, re *regexp.Regexp, what string) map[string]string {
	if v.Kind != yaml.MappingNode {
		p.errorf(v, "%s: expected a mapping of names to values", field)
		return nil
	}
	m := map[string]string{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		if re != nil && !re.MatchString(k.Value) {
			p.errorf(k, "%s: %q is not %s", field, k.Value, what)
			continue
		}
		if _, dup := m[k.Value]; dup {
			p.errorf(k, "%s: %s given twice", field, k.Value)
			continue
		}
		if val.Kind != yaml.ScalarNode {
			p.errorf(val, "%s.%s: expected a string", field, k.Value)
			continue
		}
		m[k.Value] = val.Value
	}
	return m
}

func (p *parser) outputs(v *yaml.Node, s *Spec) {
	s.Outputs = []string{}
	for _, n := range p.list(v, "outputs") {
		o := p.scalar(n, "outputs")
		switch {
		case o == "":
		case !slices.Contains(Outputs, o):
			p.errorf(n, "outputs: unknown output %q (known: %s)", o, strings.Join(Outputs, ", "))
		case slices.Contains(s.Outputs, o):
			p.errorf(n, "outputs: %s listed twice", o)
		default:
			s.Outputs = append(s.Outputs, o)
		}
	}
}
