package fleet

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadTree(t *testing.T, dir string) (*Matrix, *Bundle) {
	t.Helper()
	m, err := LoadMatrix(filepath.Join(dir, "fleet.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBundle(m)
	if err != nil {
		t.Fatal(err)
	}
	return m, b
}

// jobsOf summarises a plan's jobs: "name:nodeArch:kvm=ARCH,ARCH".
func jobsOf(p *Plan) string {
	var out []string
	for _, j := range p.Jobs {
		var arches []string
		for _, e := range j.Entries {
			arches = append(arches, e.Name+"/"+e.Arch)
		}
		kvm := "tcg"
		if j.KVM {
			kvm = "kvm"
		}
		out = append(out, j.Name+":"+j.NodeArch+":"+kvm+"="+strings.Join(arches, ","))
	}
	return strings.Join(out, " ")
}

func TestNewPlan(t *testing.T) {
	m, b := loadTree(t, fleetTree(t))
	for _, c := range []struct {
		nodes []string
		want  string
	}{
		{nil, "amd64:amd64:kvm=web/x86_64,db/x86_64 tcg:amd64:tcg=web/aarch64,web/armv7,db/aarch64,db/armv7"},
		{[]string{"arm64", "amd64"}, "arm64:arm64:kvm=web/aarch64,db/aarch64 amd64:amd64:kvm=web/x86_64,db/x86_64 tcg:arm64:tcg=web/armv7,db/armv7"},
		{[]string{"s390x"}, "tcg:s390x:tcg=web/x86_64,web/aarch64,web/armv7,db/x86_64,db/aarch64,db/armv7"},
	} {
		p, err := NewPlan(m, PlanOptions{Registry: "registry.example.org/team", NodeArches: c.nodes, Content: b.Sum()})
		if err != nil {
			t.Fatal(err)
		}
		if got := jobsOf(p); got != c.want {
			t.Errorf("nodes %v:\n got %s\nwant %s", c.nodes, got, c.want)
		}
	}
	p, err := NewPlan(m, PlanOptions{Registry: "registry.example.org/team/", Content: b.Sum()})
	if err != nil {
		t.Fatal(err)
	}
	e := p.Jobs[0].Entries[0]
	if p.Image(e) != "registry.example.org/team/web:latest-x86_64" || p.Index("web") != "registry.example.org/team/web:latest" ||
		p.Cache != "registry.example.org/team/alpinist-cache" || p.ResultTag("amd64", 1) != "fleet-"+p.Run+"-amd64-1" {
		t.Errorf("names: %s %s %s %s", p.Image(e), p.Index("web"), p.Cache, p.ResultTag("amd64", 1))
	}
	if strings.Join(p.Names(), ",") != "web,db" || p.Size() != 6 || strings.Join(p.Arch, ",") != "x86_64,aarch64,armv7" {
		t.Errorf("names %v, size %d, arch %v", p.Names(), p.Size(), p.Arch)
	}
	// The run name is the plan's and the files' hash: the same plan
	// gets the same name, another file another.
	again, _ := NewPlan(m, PlanOptions{Registry: "registry.example.org/team", Content: b.Sum()})
	other, _ := NewPlan(m, PlanOptions{Registry: "registry.example.org/team", Content: []byte("changed")})
	if again.Run != p.Run || other.Run == p.Run || !runRE.MatchString(p.Run) {
		t.Errorf("run names %q %q %q", p.Run, again.Run, other.Run)
	}
	// The plan's JSON reads back the same, strictly.
	back, err := ParsePlan(p.Marshal(), "plan.json")
	if err != nil || !bytes.Equal(back.Marshal(), p.Marshal()) {
		t.Errorf("plan round trip: %v", err)
	}
	if en, err := back.Entry("tcg", 3); err != nil || en != (Entry{Spec: "db/db.yaml", Name: "db", Arch: "armv7"}) {
		t.Errorf("tcg 3: %+v %v", en, err)
	}
	for _, c := range []struct {
		job   string
		index int
		want  string
	}{{"tcg", 4, "entries 0 to 3, not 4"}, {"arm64", 0, `no job "arm64" (it has amd64, tcg)`}, {"amd64", -1, "not -1"}} {
		if _, err := back.Entry(c.job, c.index); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("entry %s %d: %v", c.job, c.index, err)
		}
	}

	for _, c := range []struct {
		o    PlanOptions
		want string
	}{
		{PlanOptions{}, "no registry"},
		{PlanOptions{Registry: "team/web"}, "expected HOST[:PORT][/PATH]"},
		{PlanOptions{Registry: "Registry.example.org/Team"}, "expected HOST"},
		{PlanOptions{Registry: "r.example.org", Tag: "a/b"}, `tag "a/b"`},
		{PlanOptions{Registry: "r.example.org", Run: "Run_1"}, `run name "Run_1"`},
		{PlanOptions{Registry: "r.example.org", NodeArches: []string{"amd64", "amd64"}}, "give each kubernetes.io/arch value once"},
		{PlanOptions{Registry: "r.example.org", Cache: "r.example.org/UPPER"}, "not a repository"},
	} {
		if _, err := NewPlan(m, c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.o, err, c.want)
		}
	}
}

func TestParsePlanRejects(t *testing.T) {
	m, b := loadTree(t, fleetTree(t))
	p, err := NewPlan(m, PlanOptions{Registry: "r.example.org", Content: b.Sum()})
	if err != nil {
		t.Fatal(err)
	}
	good := string(p.Marshal())
	for _, c := range []struct{ text, want string }{
		{strings.Replace(good, `"version": 1`, `"version": 2`, 1), "plan version 2"},
		{strings.Replace(good, `"tag": "latest"`, `"tag": "latest", "extra": 1`, 1), `unknown field "extra"`},
		{strings.Replace(good, `"spec": "web.yaml"`, `"spec": "../web.yaml"`, 1), "inside the matrix's directory"},
		{strings.Replace(good, `"arch": "armv7"`, `"arch": "mips"`, 1), "mips"},
		{strings.Replace(good, `"registry": "r.example.org"`, `"registry": ""`, 1), "not a whole plan"},
		{good + "{}", "after the JSON value"},
		{"[]", "not a plan"},
	} {
		if _, err := ParsePlan([]byte(c.text), "plan.json"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v, want %q", err, c.want)
		}
	}
}

// FuzzParsePlan: a plan is read strictly or refused, never a panic; what
// is read has entries whose specs stay inside the root.
func FuzzParsePlan(f *testing.F) {
	f.Add([]byte(`{"version":1,"run":"r1","matrix":"m.yaml","registry":"r.example.org","cache":"r.example.org/c","tag":"latest","arch":["x86_64"],"jobs":[{"name":"amd64","nodeArch":"amd64","kvm":true,"entries":[{"spec":"a.yaml","name":"a","arch":"x86_64"}]}]}`))
	f.Add([]byte(`{"version":1,"jobs":[{"entries":[{"spec":"../../etc/passwd"}]}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePlan(data, "plan.json")
		if err != nil {
			return
		}
		for _, j := range p.Jobs {
			for _, e := range j.Entries {
				if _, err := specRel(e.Spec); err != nil {
					t.Errorf("entry %q read: %v", e.Spec, err)
				}
			}
		}
	})
}

func TestBundle(t *testing.T) {
	dir := fleetTree(t)
	_, b := loadTree(t, dir)
	var rels []string
	for _, f := range b.Files {
		rels = append(rels, f.Rel)
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Rel)))
		if err != nil || !bytes.Equal(data, f.Data) {
			t.Errorf("%s: bundled bytes differ (%v)", f.Rel, err)
		}
		if f.Exec != (f.Rel == "bin/hello.sh") {
			t.Errorf("%s: exec %v", f.Rel, f.Exec)
		}
		if f.Text() != (f.Rel != "bin/data.bin") {
			t.Errorf("%s: text %v", f.Rel, f.Text())
		}
	}
	want := "base.yaml bin/data.bin bin/hello.sh db/db.yaml fleet.yaml keys/alpine.rsa.pub motd web.yaml"
	if strings.Join(rels, " ") != want {
		t.Errorf("bundle:\n got %s\nwant %s", strings.Join(rels, " "), want)
	}
	_, b2 := loadTree(t, dir)
	if !bytes.Equal(b.Sum(), b2.Sum()) {
		t.Error("the bundle's sum changes between two reads")
	}

	outside := t.TempDir()
	writeTree(t, outside, map[string]string{"k.rsa.pub": keyPEM})
	for _, c := range []struct {
		files map[string]string
		link  [2]string
		want  string
	}{
		{files: map[string]string{"web.yaml": "name: web\nrepositories: [/srv/repo]\nkeys: [keys/]\npackages: [a]\n"}, want: "repository /srv/repo is a local directory"},
		{files: map[string]string{"web.yaml": "name: web\nrepositories: [https://x.org/a]\nkeys: [" + outside + "/k.rsa.pub]\npackages: [a]\n"}, want: "is outside the matrix's directory"},
		{files: map[string]string{"web.yaml": "name: web\nrepositories: [https://x.org/a]\nkeys: [keys/]\npackages: [a]\nfiles: [{dst: /big, src: big}]\n", "big": strings.Repeat("x", MaxBundle+1)}, want: "more than a ConfigMap holds"},
		{link: [2]string{"keys/link.rsa.pub", "alpine.rsa.pub"}, want: "not a regular file"},
		{files: map[string]string{"keys/a.rsa.pub": strings.Repeat("k", 500<<10), "keys/b.rsa.pub": strings.Repeat("k", 500<<10)}, want: "a ConfigMap holds less than 1 MiB"},
	} {
		d := fleetTree(t)
		writeTree(t, d, c.files)
		if c.link[0] != "" {
			if err := os.Symlink(c.link[1], filepath.Join(d, c.link[0])); err != nil {
				t.Fatal(err)
			}
		}
		m, err := LoadMatrix(filepath.Join(d, "fleet.yaml"))
		if err == nil {
			_, err = NewBundle(m)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.files, err, c.want)
		}
	}
}
