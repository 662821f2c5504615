package spec

import (
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// File is one entry of the spec's files: what to put at Dst in the
// target. Exactly one of Src, Content (HasContent), Symlink, Hardlink or
// Directory says what; with none of them the entry changes the mode or
// owner of what is already at Dst.
type File struct {
	// Dst is the absolute path in the target.
	Dst string
	// Src is a host file or directory (absolute), copied to Dst; a
	// directory's content is copied recursively, symlinks in it as
	// symlinks.
	Src string
	// Content is written to the file Dst.
	Content    string
	HasContent bool
	// Symlink makes Dst a symbolic link to this target.
	Symlink string
	// Hardlink makes Dst a hard link to this existing path of the target.
	Hardlink string
	// Directory makes Dst a directory (and its missing parents).
	Directory bool
	// Mode is the Unix permission bits (0-07777) of files, and of Dst for
	// a directory, content or permission change; NoMode: the default
	// (0644, or 0755 for a host file its owner may execute; 0755 for
	// directories).
	Mode int
	// DirMode is the mode of directories copied from Src (NoMode: 0755).
	DirMode int
	// Owner is "user", "user:group", "uid:gid" or ":group", resolved in the
	// target once its users exist ("": root).
	Owner string
}

// Kind names what the entry does: copy, content, symlink, hardlink,
// directory or permissions.
func (f File) Kind() string {
	switch {
	case f.Src != "":
		return "copy"
	case f.HasContent:
		return "content"
	case f.Symlink != "":
		return "symlink"
	case f.Hardlink != "":
		return "hardlink"
	case f.Directory:
		return "directory"
	}
	return "permissions"
}

// NoMode marks a mode the spec does not give.
const NoMode = -1

var ownerRE = regexp.MustCompile(`^([a-z_][a-z0-9_.-]*|[0-9]+)?(:([a-z_][a-z0-9_.-]*|[0-9]+))?$`)

func (p *parser) files(v *yaml.Node, s *Spec) {
	for _, n := range p.list(v, "files") {
		f := File{Mode: NoMode, DirMode: NoMode}
		what := 0
		p.mapping(n, "files", map[string]func(*yaml.Node){
			"dst": func(v *yaml.Node) { f.Dst = p.scalar(v, "files.dst") },
			"src": func(v *yaml.Node) {
				what++
				f.Src = p.source(v)
			},
			"content": func(v *yaml.Node) {
				what++
				if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
					p.errorf(v, "files.content: expected a string")
				}
				f.Content, f.HasContent = v.Value, true
			},
			"symlink": func(v *yaml.Node) {
				what++
				f.Symlink = p.scalar(v, "files.symlink")
			},
			"hardlink": func(v *yaml.Node) {
				what++
				f.Hardlink = p.scalar(v, "files.hardlink")
				if f.Hardlink != "" && !strings.HasPrefix(f.Hardlink, "/") {
					p.errorf(v, "files.hardlink: %q must be an absolute path in the target", f.Hardlink)
				}
			},
			"directory": func(v *yaml.Node) {
				if f.Directory = p.boolean(v, "files.directory"); f.Directory {
					what++
				}
			},
			"mode":     func(v *yaml.Node) { f.Mode = p.mode(v, "files.mode") },
			"dir_mode": func(v *yaml.Node) { f.DirMode = p.mode(v, "files.dir_mode") },
			"owner": func(v *yaml.Node) {
				f.Owner = p.scalar(v, "files.owner")
				if !ownerRE.MatchString(f.Owner) {
					p.errorf(v, "files.owner: %q: write user, user:group, :group or uid:gid", f.Owner)
				}
			},
		})
		if n.Kind != yaml.MappingNode {
			continue
		}
		switch {
		case f.Dst == "":
			p.errorf(n, "files: an entry needs dst: (the path in the target)")
		case !strings.HasPrefix(f.Dst, "/"):
			p.errorf(n, "files: dst %q must be an absolute path in the target", f.Dst)
		case path.Clean(f.Dst) != f.Dst && path.Clean(f.Dst)+"/" != f.Dst:
			p.errorf(n, "files: dst %q: write it without . or .. parts", f.Dst)
		}
		if f.Dst != "" {
			f.Dst = path.Clean(f.Dst)
		}
		if what > 1 {
			p.errorf(n, "files: give only one of src, content, symlink, hardlink or directory")
		}
		if f.DirMode != NoMode && f.Src == "" {
			p.errorf(n, "files: dir_mode is for the directories copied from src")
		}
		if what == 0 && f.Mode == NoMode && f.Owner == "" && f.Dst != "" {
			p.errorf(n, "files: %s: give src, content, symlink, hardlink or directory: true (or mode/owner to change what is there)", f.Dst)
		}
		if f.Symlink != "" && f.Mode != NoMode {
			p.errorf(n, "files: a symlink has no mode")
		}
		s.Files = append(s.Files, f)
	}
}

// source resolves a files src: a relative path must stay inside the
// spec's directory, symlinks resolved; an absolute path is taken as the
// explicit way to copy from elsewhere.
func (p *parser) source(v *yaml.Node) string {
	src := p.scalar(v, "files.src")
	if src == "" {
		return ""
	}
	explicit := filepath.IsAbs(src) || strings.HasPrefix(src, "~/")
	full := p.path(src)
	real, err := filepath.EvalSymlinks(full)
	if err != nil {
		p.errorf(v, "files.src: %v", err)
		return ""
	}
	if !explicit {
		dir, err := filepath.EvalSymlinks(p.dir)
		if err != nil {
			dir = p.dir
		}
		if rel, err := filepath.Rel(dir, real); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			p.errorf(v, "files.src: %q is outside the spec's directory %s (it leads to %s); write its absolute path to copy it anyway", src, p.dir, real)
			return ""
		}
	}
	fi, err := os.Stat(real)
	if err != nil {
		p.errorf(v, "files.src: %v", err)
		return ""
	}
	if !fi.Mode().IsRegular() && !fi.IsDir() {
		p.errorf(v, "files.src: %s is neither a file nor a directory", src)
		return ""
	}
	return real
}

// mode reads octal permission bits: 644, 0644 or 0o644.
func (p *parser) mode(v *yaml.Node, field string) int {
	text := p.scalar(v, field)
	t := strings.TrimPrefix(strings.TrimPrefix(text, "0o"), "0O")
	m, err := strconv.ParseUint(t, 8, 32)
	if err != nil || m > 0o7777 {
		p.errorf(v, "%s: %q is not an octal mode such as 0644 or 0755", field, text)
		return NoMode
	}
	return int(m)
}
