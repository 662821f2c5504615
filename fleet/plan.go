package fleet

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/alpinist/alpinist/arch"
)

// Plan is a fleet's work: its jobs, each a list of entries that one
// Indexed Job (or the local run) runs by index. Its JSON is what the
// workers read (plan.json).
type Plan struct {
	// Version is the plan format's version (PlanVersion).
	Version int `json:"version"`
	// Run names the run: the Kubernetes objects and the result tags
	// carry it.
	Run string `json:"run"`
	// Matrix is the matrix file's name, relative to the plan's root.
	Matrix string `json:"matrix"`
	// Registry is where images go: REGISTRY/NAME:TAG-ARCH per arch, and
	// REGISTRY/NAME:TAG for the multi-arch index.
	Registry string `json:"registry"`
	// Cache is the registry repository of the shared cache and the
	// workers' results.
	Cache string `json:"cache"`
	// Tag tags the images.
	Tag string `json:"tag"`
	// Insecure allows plain HTTP to a registry on loopback (local runs).
	Insecure bool `json:"insecure,omitempty"`
	// Arch are the matrix's arches, in its order (the order of the
	// multi-arch indexes).
	Arch []string `json:"arch"`
	// Jobs are the plan's jobs: one per Kubernetes node arch with KVM,
	// and one for the arches that no node runs natively (TCG).
	Jobs []Job `json:"jobs"`
}

// PlanVersion is the version of the plan format written.
const PlanVersion = 1

// Job is one Indexed Job: its entries run by index on nodes of NodeArch.
type Job struct {
	// Name is the node arch for a KVM job, "tcg" for the emulated one.
	Name string `json:"name"`
	// NodeArch is the nodes' kubernetes.io/arch.
	NodeArch string `json:"nodeArch"`
	// KVM: the job's pods ask for /dev/kvm (the arch is the node's own).
	KVM bool `json:"kvm"`
	// Entries are the job's builds, by completion index.
	Entries []Entry `json:"entries"`
}

// Entry is one spec × arch.
type Entry struct {
	// Spec is the spec's path relative to the plan's root ('/').
	Spec string `json:"spec"`
	// Name is the spec's name: its image is REGISTRY/NAME.
	Name string `json:"name"`
	// Arch is the Alpine arch.
	Arch string `json:"arch"`
}

// PlanOptions tune NewPlan.
type PlanOptions struct {
	// Registry is HOST[:PORT][/PATH]: images go to REGISTRY/NAME.
	Registry string
	// Cache is the shared cache's repository (default REGISTRY/alpinist-cache).
	Cache string
	// Tag is the images' tag (default latest).
	Tag string
	// NodeArches are the kubernetes.io/arch values of the cluster's
	// nodes, the first the default for emulated builds (default amd64).
	NodeArches []string
	// Run names the run (default: from the plan's content).
	Run string
	// Insecure allows plain HTTP to a registry on loopback.
	Insecure bool
	// Content, when set, is hashed into the default run name (the
	// bundle of spec files).
	Content []byte
}

var (
	runRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$`)
	tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}$`)
	// nodeArchRE is a Go GOARCH name, as kubelet labels nodes.
	nodeArchRE = regexp.MustCompile(`^[a-z0-9]+$`)
)

// NewPlan plans the matrix: every spec × arch, grouped into jobs by
// where it runs. An arch runs with KVM on nodes of its own arch when the
// cluster has them, else emulated on the first node arch.
func NewPlan(m *Matrix, o PlanOptions) (*Plan, error) {
	if o.Registry == "" {
		return nil, errors.New("fleet: no registry: give --registry HOST[:PORT][/PATH]")
	}
	reg := strings.TrimSuffix(o.Registry, "/")
	host := strings.SplitN(reg, "/", 2)[0]
	if _, err := name.NewRepository(reg+"/x", name.Insecure); err != nil || !strings.ContainsAny(host, ".:") && host != "localhost" {
		return nil, fmt.Errorf("fleet: registry %q: expected HOST[:PORT][/PATH], such as registry.example.org/team or localhost:5000", o.Registry)
	}
	if o.Cache == "" {
		o.Cache = reg + "/alpinist-cache"
	}
	if _, err := name.NewRepository(o.Cache, name.Insecure); err != nil {
		return nil, fmt.Errorf("fleet: cache %q is not a repository (HOST[:PORT]/REPO): %w", o.Cache, err)
	}
	if o.Tag == "" {
		o.Tag = "latest"
	}
	if !tagRE.MatchString(o.Tag) {
		return nil, fmt.Errorf("fleet: tag %q: letters, digits, '_', '.' and '-', at most 100", o.Tag)
	}
	if len(o.NodeArches) == 0 {
		o.NodeArches = []string{"amd64"}
	}
	for i, n := range o.NodeArches {
		if !nodeArchRE.MatchString(n) || slices.Contains(o.NodeArches[:i], n) {
			return nil, fmt.Errorf("fleet: node arch %q: give each kubernetes.io/arch value once (amd64, arm64, ppc64le, s390x, ...)", n)
		}
	}
	p := &Plan{Version: PlanVersion, Matrix: filepath.Base(m.File), Registry: reg, Cache: o.Cache, Tag: o.Tag, Insecure: o.Insecure, Arch: m.Arch}
	for _, s := range m.Specs {
		for _, a := range m.Arch {
			e := Entry{Spec: s.Rel, Name: s.Spec.Name, Arch: a}
			if _, err := name.NewTag(p.Image(e), name.Insecure); err != nil {
				return nil, fmt.Errorf("fleet: %s: image %s: %w", s.Rel, p.Image(e), err)
			}
			p.add(jobOf(a, o.NodeArches), e)
		}
	}
	p.sortJobs(o.NodeArches)
	if o.Run == "" {
		h := sha256.New()
		j, _ := json.Marshal(p)
		h.Write(j)
		h.Write(o.Content)
		o.Run = hex.EncodeToString(h.Sum(nil))[:12]
	}
	if !runRE.MatchString(o.Run) {
		return nil, fmt.Errorf("fleet: run name %q: lowercase letters, digits and '-', at most 20, starting and ending with a letter or digit (it names Kubernetes objects)", o.Run)
	}
	p.Run = o.Run
	return p, nil
}

// jobOf is the job an arch runs in.
func jobOf(name string, nodes []string) Job {
	a, _ := arch.Lookup(name)
	if a.QEMU.KVM && slices.Contains(nodes, a.OCI) {
		return Job{Name: a.OCI, NodeArch: a.OCI, KVM: true}
	}
	return Job{Name: "tcg", NodeArch: nodes[0]}
}

// add puts e in job j's entries, making the job when it is new.
func (p *Plan) add(j Job, e Entry) {
	for i := range p.Jobs {
		if p.Jobs[i].Name == j.Name {
			p.Jobs[i].Entries = append(p.Jobs[i].Entries, e)
			return
		}
	}
	j.Entries = []Entry{e}
	p.Jobs = append(p.Jobs, j)
}

// sortJobs orders the jobs: the KVM ones in the order of nodes, then the
// emulated one.
func (p *Plan) sortJobs(nodes []string) {
	rank := func(j Job) int {
		if !j.KVM {
			return len(nodes)
		}
		return slices.Index(nodes, j.NodeArch)
	}
	slices.SortStableFunc(p.Jobs, func(a, b Job) int { return rank(a) - rank(b) })
}

// Image is the per-arch image reference of an entry.
func (p *Plan) Image(e Entry) string {
	return p.Registry + "/" + e.Name + ":" + p.Tag + "-" + e.Arch
}

// Index is the multi-arch image reference of a spec.
func (p *Plan) Index(name string) string {
	return p.Registry + "/" + name + ":" + p.Tag
}

// ResultTag is the cache repository's tag of an entry's result.
func (p *Plan) ResultTag(job string, index int) string {
	return fmt.Sprintf("fleet-%s-%s-%d", p.Run, job, index)
}

// Entry gives a job's entry by index.
func (p *Plan) Entry(job string, index int) (Entry, error) {
	for _, j := range p.Jobs {
		if j.Name != job {
			continue
		}
		if index < 0 || index >= len(j.Entries) {
			return Entry{}, fmt.Errorf("fleet: job %s has entries 0 to %d, not %d", job, len(j.Entries)-1, index)
		}
		return j.Entries[index], nil
	}
	var names []string
	for _, j := range p.Jobs {
		names = append(names, j.Name)
	}
	return Entry{}, fmt.Errorf("fleet: the plan has no job %q (it has %s)", job, strings.Join(names, ", "))
}

// Names are the plan's spec names, in matrix order.
func (p *Plan) Names() []string {
	var names []string
	for _, j := range p.Jobs {
		for _, e := range j.Entries {
			if !slices.Contains(names, e.Name) {
				names = append(names, e.Name)
			}
		}
	}
	return names
}

// Size counts the plan's entries.
func (p *Plan) Size() int {
	n := 0
	for _, j := range p.Jobs {
		n += len(j.Entries)
	}
	return n
}

// Marshal is the plan's JSON (plan.json).
func (p *Plan) Marshal() []byte {
	b, _ := json.MarshalIndent(p, "", "  ")
	return append(b, '\n')
}

// ReadPlan reads a plan.json; its root (where the specs are) is its
// directory.
func ReadPlan(file string) (*Plan, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	return ParsePlan(data, file)
}

// strictJSON decodes one JSON value, refusing unknown fields and
// trailing data.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON value")
	}
	return nil
}

// ParsePlan reads a plan's JSON, strictly.
func ParsePlan(data []byte, file string) (*Plan, error) {
	var p Plan
	if err := strictJSON(data, &p); err != nil {
		return nil, fmt.Errorf("fleet: %s: not a plan: %w", file, err)
	}
	if p.Version != PlanVersion {
		return nil, fmt.Errorf("fleet: %s: plan version %d; this alpinist reads version %d", file, p.Version, PlanVersion)
	}
	if !runRE.MatchString(p.Run) || p.Registry == "" || p.Cache == "" || !tagRE.MatchString(p.Tag) || len(p.Jobs) == 0 {
		return nil, fmt.Errorf("fleet: %s: not a whole plan (run, registry, cache, tag and jobs are needed)", file)
	}
	for _, j := range p.Jobs {
		for _, e := range j.Entries {
			if _, err := specRel(e.Spec); err != nil || e.Name == "" {
				return nil, fmt.Errorf("fleet: %s: job %s: entry %q: %v", file, j.Name, e.Spec, err)
			}
			if _, err := arch.Get(e.Arch); err != nil {
				return nil, fmt.Errorf("fleet: %s: job %s: %w", file, j.Name, err)
			}
		}
	}
	return &p, nil
}
