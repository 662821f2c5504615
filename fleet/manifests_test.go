package fleet

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation"
	sigsyaml "sigs.k8s.io/yaml"
)

// validator checks manifests as a cluster would before running them:
// decoded strictly into k8s.io/api's types (unknown, duplicate or
// miscased fields fail), and valid against Kubernetes' OpenAPI schema
// (or Argo's JSON schema, which also must list every field used).
type validator struct {
	strict  runtime.Decoder
	schemas map[string]*jsonschema.Schema
	argo    map[string]any // Argo's schema definitions
}

// readSchema reads a gzip'ed JSON document of testdata/schemas.
func readSchema(t *testing.T, name string) any {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "schemas", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(zr)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return doc
}

func newValidator(t *testing.T) *validator {
	t.Helper()
	sch := runtime.NewScheme()
	if err := corev1.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	if err := batchv1.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	v := &validator{strict: serializer.NewCodecFactory(sch, serializer.EnableStrict).UniversalDeserializer(), schemas: map[string]*jsonschema.Schema{}}
	c := jsonschema.NewCompiler()
	argo := readSchema(t, "argo-workflows-v4.1.2-schema.json.gz")
	for name, doc := range map[string]any{
		"batch.json": readSchema(t, "k8s-v1.37.2-apis__batch__v1_openapi.json.gz"),
		"core.json":  readSchema(t, "k8s-v1.37.2-api__v1_openapi.json.gz"),
		"argo.json":  argo,
	} {
		if err := c.AddResource(name, doc); err != nil {
			t.Fatal(err)
		}
	}
	for kind, ref := range map[string]string{
		"Job":       "batch.json#/components/schemas/io.k8s.api.batch.v1.Job",
		"ConfigMap": "core.json#/components/schemas/io.k8s.api.core.v1.ConfigMap",
		"Workflow":  "argo.json#/definitions/io.argoproj.workflow.v1alpha1.Workflow",
	} {
		s, err := c.Compile(ref)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		v.schemas[kind] = s
	}
	v.argo = argo.(map[string]any)["definitions"].(map[string]any)
	return v
}

// check validates one manifest; for Kubernetes kinds it returns the
// decoded object.
func (v *validator) check(data []byte) (runtime.Object, error) {
	js, err := sigsyaml.YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		return nil, err
	}
	kind, _ := inst.(map[string]any)["kind"].(string)
	s, ok := v.schemas[kind]
	if !ok {
		return nil, fmt.Errorf("kind %q", kind)
	}
	if err := s.Validate(inst); err != nil {
		return nil, fmt.Errorf("schema: %v", err)
	}
	if kind == "Workflow" {
		if unknown := v.unknownArgo(inst, "io.argoproj.workflow.v1alpha1.Workflow", "", nil); len(unknown) > 0 {
			return nil, fmt.Errorf("fields Argo's schema does not have: %s", strings.Join(unknown, ", "))
		}
		return nil, nil
	}
	obj, _, err := v.strict.Decode(data, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("strict decoding: %v", err)
	}
	return obj, nil
}

// unknownArgo lists the fields of inst that the schema definition def
// does not declare, walking properties, items and additionalProperties.
func (v *validator) unknownArgo(inst any, def, at string, out []string) []string {
	s, _ := v.argo[def].(map[string]any)
	return v.unknownIn(inst, s, at, out)
}

func (v *validator) unknownIn(inst any, s map[string]any, at string, out []string) []string {
	if s == nil {
		return out
	}
	if ref, ok := s["$ref"].(string); ok {
		return v.unknownArgo(inst, strings.TrimPrefix(ref, "#/definitions/"), at, out)
	}
	switch x := inst.(type) {
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		addl, _ := s["additionalProperties"].(map[string]any)
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range x {
				if !yield(k) {
					return
				}
			}
		}) {
			switch {
			case props[k] != nil:
				out = v.unknownIn(x[k], props[k].(map[string]any), at+"."+k, out)
			case addl != nil:
				out = v.unknownIn(x[k], addl, at+"."+k, out)
			case props != nil:
				out = append(out, at+"."+k)
			}
		}
	case []any:
		items, _ := s["items"].(map[string]any)
		for i, e := range x {
			out = v.unknownIn(e, items, fmt.Sprintf("%s[%d]", at, i), out)
		}
	}
	return out
}

func testPlan(t *testing.T, dir string) (*Plan, *Bundle) {
	t.Helper()
	m, b := loadTree(t, dir)
	p, err := NewPlan(m, PlanOptions{Registry: "registry.example.org/team", NodeArches: []string{"amd64", "arm64"}, Content: b.Sum()})
	if err != nil {
		t.Fatal(err)
	}
	return p, b
}

func testKubeOptions() KubeOptions {
	o := DefaultKubeOptions()
	o.Image = "registry.example.org/team/alpinist:1.0"
	o.Namespace = "builds"
	o.RegistrySecret = "regcred"
	o.KVMGroup = 36
	return o
}

// TestKubernetesManifests: the manifests validate, each Indexed Job runs
// its job's entries where and how the plan says, and the ConfigMap, as
// the pods mount it, gives back the plan, the matrix and its files.
func TestKubernetesManifests(t *testing.T) {
	dir := fleetTree(t)
	p, b := testPlan(t, dir)
	files, err := Kubernetes(p, b, testKubeOptions())
	if err != nil {
		t.Fatal(err)
	}
	v := newValidator(t)
	var cm *corev1.ConfigMap
	jobs := map[string]*batchv1.Job{}
	var names []string
	for _, f := range files {
		names = append(names, f.Path)
		obj, err := v.check(f.Data)
		if err != nil {
			t.Fatalf("%s: %v\n%s", f.Path, err, f.Data)
		}
		switch o := obj.(type) {
		case *corev1.ConfigMap:
			cm = o
		case *batchv1.Job:
			jobs[o.Name] = o
		}
		if obj.(interface{ GetNamespace() string }).GetNamespace() != "builds" {
			t.Errorf("%s: not in the namespace", f.Path)
		}
	}
	want := "jobs/00-configmap.yaml jobs/10-build-amd64.yaml jobs/11-build-arm64.yaml jobs/12-build-tcg.yaml jobs/90-assemble.yaml"
	if strings.Join(names, " ") != want {
		t.Errorf("files %s", strings.Join(names, " "))
	}
	for _, j := range p.Jobs {
		job := jobs["alpinist-"+p.Run+"-build-"+j.Name]
		if job == nil {
			t.Fatalf("no Job for %s: %v", j.Name, jobs)
		}
		checkJob(t, job)
		s, pod := job.Spec, job.Spec.Template.Spec
		c := pod.Containers[0]
		if *s.CompletionMode != batchv1.IndexedCompletion || int(*s.Completions) != len(j.Entries) || *s.BackoffLimitPerIndex != 2 ||
			pod.NodeSelector["kubernetes.io/arch"] != j.NodeArch || strings.Join(c.Args, " ") != "fleet worker /etc/alpinist/fleet/plan.json --job "+j.Name {
			t.Errorf("job %s: %+v\n%v", j.Name, s, c.Args)
		}
		kvm, hasKVM := c.Resources.Limits["devices.kubevirt.io/kvm"]
		if hasKVM != j.KVM || hasKVM && kvm.String() != "1" {
			t.Errorf("job %s (KVM %v): limits %v", j.Name, j.KVM, c.Resources.Limits)
		}
		wantDeadline := int64(3600)
		if !j.KVM {
			wantDeadline *= 4
		}
		if *pod.ActiveDeadlineSeconds != wantDeadline || *s.ActiveDeadlineSeconds < wantDeadline {
			t.Errorf("job %s: deadlines %d per pod, %d in all", j.Name, *pod.ActiveDeadlineSeconds, *s.ActiveDeadlineSeconds)
		}
		if !slices.Equal(pod.SecurityContext.SupplementalGroups, []int64{36}) || pod.ImagePullSecrets[0].Name != "regcred" || !*c.SecurityContext.ReadOnlyRootFilesystem {
			t.Errorf("job %s: security %+v, pull secrets %v", j.Name, pod.SecurityContext, pod.ImagePullSecrets)
		}
		// The pod's view of the ConfigMap is the matrix's directory.
		root := mountConfigMap(t, cm, pod.Volumes)
		back, err := ReadPlan(filepath.Join(root, PlanFile))
		if err != nil || !bytes.Equal(back.Marshal(), p.Marshal()) {
			t.Fatalf("the plan the pods read: %v", err)
		}
		m2, err := LoadMatrix(filepath.Join(root, back.Matrix))
		if err != nil {
			t.Fatalf("the matrix the pods read: %v", err)
		}
		b2, err := NewBundle(m2)
		if err != nil || !bytes.Equal(b2.Sum(), b.Sum()) {
			t.Errorf("the pods' files differ from the matrix's directory (%v)", err)
		}
		if fi, err := os.Stat(filepath.Join(root, "bin", "hello.sh")); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("bin/hello.sh in the pod: %v %v", fi.Mode(), err)
		}
	}
	as := jobs["alpinist-"+p.Run+"-assemble"]
	if as == nil {
		t.Fatal("no assemble Job")
	}
	checkJob(t, as)
	args := as.Spec.Template.Spec.Containers[0].Args
	if len(args) != 5 || args[1] != "assemble" || args[3] != "--wait" || as.Spec.CompletionMode != nil && *as.Spec.CompletionMode == batchv1.IndexedCompletion {
		t.Errorf("assemble: %v", args)
	}

	// The same plan writes the same bytes.
	again, _ := Kubernetes(p, b, testKubeOptions())
	for i := range files {
		if !bytes.Equal(files[i].Data, again[i].Data) {
			t.Errorf("%s differs between two writes", files[i].Path)
		}
	}
}

// checkJob checks what the API server's validation would refuse and the
// schema does not say.
func checkJob(t *testing.T, j *batchv1.Job) {
	t.Helper()
	if errs := validation.IsDNS1123Label(j.Name); len(errs) > 0 {
		t.Errorf("job name %q: %v", j.Name, errs)
	}
	s, pod := j.Spec, j.Spec.Template.Spec
	if (s.BackoffLimitPerIndex != nil || s.PodFailurePolicy != nil) && pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("%s: backoffLimitPerIndex and podFailurePolicy need restartPolicy Never", j.Name)
	}
	if s.BackoffLimitPerIndex != nil && (s.CompletionMode == nil || *s.CompletionMode != batchv1.IndexedCompletion) {
		t.Errorf("%s: backoffLimitPerIndex needs completionMode Indexed", j.Name)
	}
	if s.Parallelism == nil || s.Completions == nil || *s.Parallelism > *s.Completions || *s.Parallelism < 1 {
		t.Errorf("%s: parallelism %v, completions %v", j.Name, s.Parallelism, s.Completions)
	}
	for _, c := range pod.Containers {
		for r, q := range c.Resources.Requests {
			if l, ok := c.Resources.Limits[r]; ok && l.Cmp(q) < 0 {
				t.Errorf("%s: %s: request %s over limit %s", j.Name, r, q.String(), l.String())
			}
		}
		mounted := map[string]bool{}
		for _, vm := range c.VolumeMounts {
			mounted[vm.Name] = true
		}
		for _, vol := range pod.Volumes {
			if !mounted[vol.Name] {
				t.Errorf("%s: volume %s is not mounted", j.Name, vol.Name)
			}
		}
	}
}

// mountConfigMap writes the files a configMap volume shows a pod.
func mountConfigMap(t *testing.T, cm *corev1.ConfigMap, vols []corev1.Volume) string {
	t.Helper()
	root := t.TempDir()
	for _, vol := range vols {
		if vol.ConfigMap == nil {
			continue
		}
		if vol.ConfigMap.Name != cm.Name {
			t.Fatalf("volume %s mounts ConfigMap %s, not %s", vol.Name, vol.ConfigMap.Name, cm.Name)
		}
		for _, it := range vol.ConfigMap.Items {
			var data []byte
			if s, ok := cm.Data[it.Key]; ok {
				data = []byte(s)
			} else if d, ok := cm.BinaryData[it.Key]; ok {
				data = d
			} else {
				t.Fatalf("item %s: no key %s in the ConfigMap", it.Path, it.Key)
			}
			mode := os.FileMode(0o644)
			if it.Mode != nil {
				mode = os.FileMode(*it.Mode)
			}
			full := filepath.Join(root, filepath.FromSlash(it.Path))
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, data, mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

// TestArgoWorkflow: the Workflow validates against Argo's schema, uses
// only fields it declares, and its Kubernetes parts decode strictly; its
// DAG has one task per job, expanded over the job's indexes, and the
// assemble task after all of them.
func TestArgoWorkflow(t *testing.T) {
	p, b := testPlan(t, fleetTree(t))
	files, err := Argo(p, b, testKubeOptions())
	if err != nil {
		t.Fatal(err)
	}
	v := newValidator(t)
	if len(files) != 2 || files[0].Path != "argo/00-configmap.yaml" || files[1].Path != "argo/10-workflow.yaml" {
		t.Fatalf("files %v", files)
	}
	for _, f := range files {
		if _, err := v.check(f.Data); err != nil {
			t.Fatalf("%s: %v\n%s", f.Path, err, f.Data)
		}
	}
	var wf struct {
		Spec struct {
			Volumes         []corev1.Volume
			SecurityContext corev1.PodSecurityContext
			Templates       []struct {
				Name         string
				NodeSelector map[string]string
				Container    *json.RawMessage
				DAG          *struct {
					Tasks []struct {
						Name         string
						Template     string
						WithItems    []int
						Dependencies []string
					}
				}
			}
		}
	}
	js, _ := sigsyaml.YAMLToJSON(files[1].Data)
	if err := json.Unmarshal(js, &wf); err != nil {
		t.Fatal(err)
	}
	var tasks []string
	for _, tpl := range wf.Spec.Templates {
		if tpl.Container != nil {
			var c corev1.Container
			if err := sigsyaml.UnmarshalStrict(*tpl.Container, &c); err != nil {
				t.Errorf("template %s: container: %v", tpl.Name, err)
			}
			if strings.HasPrefix(tpl.Name, "build-") && !slices.Contains(c.Args, "{{inputs.parameters.index}}") {
				t.Errorf("template %s: args %v", tpl.Name, c.Args)
			}
		}
		if tpl.DAG == nil {
			continue
		}
		for _, task := range tpl.DAG.Tasks {
			tasks = append(tasks, fmt.Sprintf("%s%v%v", task.Name, task.WithItems, task.Dependencies))
		}
	}
	want := "build-amd64[0 1][] build-arm64[0 1][] build-tcg[0 1][] assemble[][build-amd64 build-arm64 build-tcg]"
	if strings.Join(tasks, " ") != want {
		t.Errorf("DAG:\n got %s\nwant %s", strings.Join(tasks, " "), want)
	}
}

// TestValidatorFails: the checks above catch what a cluster would
// refuse: an unknown field, a wrong type, an Argo field that is not
// Argo's.
func TestValidatorFails(t *testing.T) {
	p, b := testPlan(t, fleetTree(t))
	files, err := Kubernetes(p, b, testKubeOptions())
	if err != nil {
		t.Fatal(err)
	}
	argo, err := Argo(p, b, testKubeOptions())
	if err != nil {
		t.Fatal(err)
	}
	job, wf := string(files[1].Data), string(argo[1].Data)
	v := newValidator(t)
	for _, c := range []struct{ name, text, want string }{
		{"unknown field", strings.Replace(job, "completionMode: Indexed", "completionMode: Indexed\n  completion: 3", 1), "strict decoding"},
		{"miscased field", strings.Replace(job, "parallelism:", "Parallelism:", 1), "strict decoding"},
		{"wrong type", strings.Replace(job, "completions: 2", "completions: two", 1), "schema"},
		{"Argo wrong type", strings.Replace(wf, `limit: "2"`, "limit: 2", 1), "schema"},
		{"Argo unknown field", strings.Replace(wf, "entrypoint: fleet", "entrypoint: fleet\n  entryPoint: x", 1), "does not have: .spec.entryPoint"},
		{"Argo unknown container field", strings.Replace(wf, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: true\n          readonly: true", 1), "readonly"},
	} {
		if c.text == job || c.text == wf {
			t.Fatalf("%s: the change did not apply", c.name)
		}
		if _, err := v.check([]byte(c.text)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// TestNoKVMResource: without a KVM resource no pod asks for /dev/kvm
// and every build gets the emulated deadline.
func TestNoKVMResource(t *testing.T) {
	p, b := testPlan(t, fleetTree(t))
	o := testKubeOptions()
	o.KVMResource = ""
	files, err := Kubernetes(p, b, o)
	if err != nil {
		t.Fatal(err)
	}
	v := newValidator(t)
	for _, f := range files[1 : len(files)-1] {
		obj, err := v.check(f.Data)
		if err != nil {
			t.Fatal(err)
		}
		pod := obj.(*batchv1.Job).Spec.Template.Spec
		if len(pod.Containers[0].Resources.Limits) != 1 || *pod.ActiveDeadlineSeconds != 4*3600 {
			t.Errorf("%s: limits %v, deadline %d", f.Path, pod.Containers[0].Resources.Limits, *pod.ActiveDeadlineSeconds)
		}
	}
}

func TestKubeOptionsRefused(t *testing.T) {
	p, b := testPlan(t, fleetTree(t))
	for _, c := range []struct {
		change func(*KubeOptions)
		want   string
	}{
		{func(o *KubeOptions) { o.Image = "" }, "no alpinist image"},
		{func(o *KubeOptions) { o.Deadline = 0 }, "at least a minute"},
		{func(o *KubeOptions) { o.TCGFactor = 0 }, "TCG factor"},
		{func(o *KubeOptions) { o.Parallelism = 0 }, "parallelism"},
		{func(o *KubeOptions) { o.Retries = -1 }, "retries"},
	} {
		o := testKubeOptions()
		c.change(&o)
		if _, err := Kubernetes(p, b, o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v, want %q", err, c.want)
		}
	}
}

// TestWriteManifests: the directory is replaced whole (no file of an
// earlier plan stays), plan.json beside it.
func TestWriteManifests(t *testing.T) {
	p, b := testPlan(t, fleetTree(t))
	out := t.TempDir()
	writeTree(t, out, map[string]string{"jobs/10-build-old.yaml": "stale", "keep.txt": "mine"})
	files, _ := Kubernetes(p, b, testKubeOptions())
	argo, _ := Argo(p, b, testKubeOptions())
	if err := WriteManifests(out, p, append(files, argo...)); err != nil {
		t.Fatal(err)
	}
	var got []string
	filepath.WalkDir(out, func(path string, d os.DirEntry, err error) error {
		if !d.IsDir() {
			r, _ := filepath.Rel(out, path)
			got = append(got, filepath.ToSlash(r))
		}
		return nil
	})
	want := "argo/00-configmap.yaml argo/10-workflow.yaml jobs/00-configmap.yaml jobs/10-build-amd64.yaml jobs/11-build-arm64.yaml jobs/12-build-tcg.yaml jobs/90-assemble.yaml keep.txt plan.json"
	if strings.Join(got, " ") != want {
		t.Errorf("wrote:\n %s\nwant\n %s", strings.Join(got, " "), want)
	}
	data, _ := os.ReadFile(filepath.Join(out, "jobs", "00-configmap.yaml"))
	if !bytes.Equal(data, files[0].Data) {
		t.Error("the ConfigMap on disk differs")
	}
	if fi, _ := os.Stat(filepath.Join(out, "jobs")); fi.Mode().Perm() != 0o755 {
		t.Errorf("jobs/ has mode %v", fi.Mode())
	}
}
