package spec

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docFiles are the files the examples of docs/spec.md name.
var docFiles = []string{"repo/main/", "keys/", "overlay/etc/", "site/index.html", "app.conf",
	"alpine-minirootfs-3.22.0-x86_64.tar.gz", "base.yaml"}

func readDoc(t *testing.T) string {
	data, err := os.ReadFile("../docs/spec.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func docDir(t *testing.T) string {
	dir := t.TempDir()
	for _, f := range docFiles {
		p := filepath.Join(dir, f)
		if strings.HasSuffix(f, "/") {
			os.MkdirAll(p, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("name: base\nrepositories: [repo/main]\npackages: [busybox]\n"), 0o644)
	}
	return dir
}

var (
	headingRE = regexp.MustCompile("(?m)^### `([a-z_]+)`$")
	blockRE   = regexp.MustCompile("(?s)(<!-- file: ([a-z.]+) -->\n)?```yaml\n(.*?)```")
)

// TestDocsFields keeps docs/spec.md and the spec in step: one section per
// top-level field, in KnownFields' order, and every example block valid.
func TestDocsFields(t *testing.T) {
	doc := readDoc(t)
	var headings []string
	for _, m := range headingRE.FindAllStringSubmatch(doc, -1) {
		headings = append(headings, m[1])
	}
	if !slices.Equal(headings, KnownFields) {
		t.Errorf("docs/spec.md documents %v;\nthe spec's fields are %v", headings, KnownFields)
	}
	blocks := blockRE.FindAllStringSubmatch(doc, -1)
	if len(blocks) < len(KnownFields) {
		t.Fatalf("only %d yaml examples in docs/spec.md", len(blocks))
	}
	dir := docDir(t)
	for _, b := range blocks {
		if b[2] != "" {
			continue // the complete example: TestDocsExample
		}
		src := b[3]
		// A fragment gets the required fields it does not give itself.
		for _, req := range []string{"name: x\n", "repositories: [/r]\n", "packages: [busybox]\n"} {
			if !regexp.MustCompile(`(?m)^` + strings.SplitN(req, ":", 2)[0] + `:`).MatchString(src) {
				src = req + src
			}
		}
		if _, err := Parse(strings.NewReader(src), "spec.md", dir); err != nil {
			t.Errorf("example in docs/spec.md does not parse: %v\n%s", err, b[3])
		}
	}
}

// TestDocsExample reads the complete example of docs/spec.md (a spec and
// the base it extends) and checks that it sets every field of Spec, so
// that a new field cannot go undocumented.
func TestDocsExample(t *testing.T) {
	dir := docDir(t)
	for _, b := range blockRE.FindAllStringSubmatch(readDoc(t), -1) {
		if b[2] != "" {
			os.WriteFile(filepath.Join(dir, b[2]), []byte(b[3]), 0o644)
		}
	}
	s, err := Load(filepath.Join(dir, "web.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	setPaths(reflect.ValueOf(*s), "", set)
	// Documented with examples of their own: the apk-tools installer's
	// fields (it needs a minirootfs) and what only apko configs give.
	skip := []string{".Installer.Minirootfs", ".Installer.SHA256", ".Installer.SHA512", ".Warnings"}
	var missing []string
	for _, p := range allPaths(reflect.TypeOf(*s), "") {
		if !set[p] && !slices.Contains(skip, p) {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Errorf("the complete example of docs/spec.md leaves unset: %v", missing)
	}
}

const specPkg = "github.com/alpinist/alpinist/spec"

func setPaths(v reflect.Value, prefix string, set map[string]bool) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			set[prefix] = true
			setPaths(v.Elem(), prefix, set)
		}
	case reflect.Struct:
		if v.Type().PkgPath() != specPkg {
			set[prefix] = set[prefix] || !v.IsZero()
			return
		}
		set[prefix] = set[prefix] || !v.IsZero()
		for i := range v.NumField() {
			setPaths(v.Field(i), prefix+"."+v.Type().Field(i).Name, set)
		}
	case reflect.Slice:
		if v.Len() > 0 {
			set[prefix] = true
			if v.Type().Elem().Kind() == reflect.Struct && v.Type().Elem().PkgPath() == specPkg {
				for i := range v.Len() {
					setPaths(v.Index(i), prefix, set)
				}
			}
		}
	default:
		if !v.IsZero() {
			set[prefix] = true
		}
	}
}

func allPaths(t reflect.Type, prefix string) []string {
	switch t.Kind() {
	case reflect.Pointer:
		return append([]string{prefix}, allPaths(t.Elem(), prefix)[1:]...)
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct && t.Elem().PkgPath() == specPkg {
			return append([]string{prefix}, allPaths(t.Elem(), prefix)[1:]...)
		}
	case reflect.Struct:
		if t.PkgPath() != specPkg {
			break
		}
		out := []string{prefix}
		for i := range t.NumField() {
			out = append(out, allPaths(t.Field(i).Type, prefix+"."+t.Field(i).Name)...)
		}
		return out
	}
	return []string{prefix}
}
