package fleet

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// KubeOptions tune the Kubernetes manifests.
type KubeOptions struct {
	// Image is the alpinist image the pods run (it has alpinist on its
	// PATH and qemu-system-* for the arches).
	Image string
	// Namespace, when set, is every object's namespace.
	Namespace string
	// KVMResource is the extended resource that gives a pod /dev/kvm
	// ("" asks for none).
	KVMResource string
	// KVMGroup, when not 0, is a supplementary group of the pods: the
	// group that owns /dev/kvm on the nodes, when it is not world
	// writable there.
	KVMGroup int64
	// RegistrySecret names a Secret of type kubernetes.io/dockerconfigjson:
	// the registry credentials of the pods' pushes and image pulls.
	RegistrySecret string
	// Deadline bounds one build with KVM; an emulated one gets
	// TCGFactor times as long.
	Deadline  time.Duration
	TCGFactor int
	// Parallelism bounds the pods of one job running at once.
	Parallelism int
	// CPU and Memory are each build pod's requests (memory is its limit
	// too).
	CPU, Memory string
	// Retries are the tries after a failed one, per entry.
	Retries int
}

// DefaultKubeOptions are the manifests' defaults.
func DefaultKubeOptions() KubeOptions {
	return KubeOptions{
		KVMResource: "devices.kubevirt.io/kvm",
		Deadline:    time.Hour,
		TCGFactor:   4,
		Parallelism: 10,
		CPU:         "2",
		Memory:      "4Gi",
		Retries:     2,
	}
}

// Mount points and names in the pods.
const (
	planDir     = "/etc/alpinist/fleet"
	PlanFile    = "plan.json"
	cacheDir    = "/var/cache/alpinist"
	tmpDir      = "/tmp"
	dockerDir   = "/etc/alpinist/registry"
	uid         = 65532
	archLabel   = "kubernetes.io/arch"
	partOfLabel = "app.kubernetes.io/part-of"
	runLabel    = "alpinist.dev/fleet-run"
)

// Kubernetes objects, with the fields alpinist writes (their names are
// the API's: the tests decode them strictly into k8s.io/api's types).
type (
	object struct {
		APIVersion string            `yaml:"apiVersion"`
		Kind       string            `yaml:"kind"`
		Metadata   meta              `yaml:"metadata"`
		Data       map[string]string `yaml:"data,omitempty"`
		BinaryData map[string]string `yaml:"binaryData,omitempty"`
		Spec       any               `yaml:"spec,omitempty"`
	}
	meta struct {
		Name      string            `yaml:"name,omitempty"`
		Namespace string            `yaml:"namespace,omitempty"`
		Labels    map[string]string `yaml:"labels,omitempty"`
	}
	jobSpec struct {
		CompletionMode          string            `yaml:"completionMode,omitempty"`
		Completions             int               `yaml:"completions"`
		Parallelism             int               `yaml:"parallelism"`
		BackoffLimit            *int              `yaml:"backoffLimit,omitempty"`
		BackoffLimitPerIndex    *int              `yaml:"backoffLimitPerIndex,omitempty"`
		ActiveDeadlineSeconds   int64             `yaml:"activeDeadlineSeconds"`
		TTLSecondsAfterFinished int               `yaml:"ttlSecondsAfterFinished"`
		PodFailurePolicy        *podFailurePolicy `yaml:"podFailurePolicy,omitempty"`
		Template                podTemplate       `yaml:"template"`
	}
	podFailurePolicy struct {
		Rules []podFailureRule `yaml:"rules"`
	}
	podFailureRule struct {
		Action          string         `yaml:"action"`
		OnPodConditions []podCondition `yaml:"onPodConditions"`
	}
	podCondition struct {
		Type string `yaml:"type"`
	}
	podTemplate struct {
		Metadata meta    `yaml:"metadata"`
		Spec     podSpec `yaml:"spec"`
	}
	podSpec struct {
		RestartPolicy         string            `yaml:"restartPolicy"`
		ActiveDeadlineSeconds int64             `yaml:"activeDeadlineSeconds,omitempty"`
		NodeSelector          map[string]string `yaml:"nodeSelector,omitempty"`
		SecurityContext       *podSecurity      `yaml:"securityContext,omitempty"`
		ImagePullSecrets      []localRef        `yaml:"imagePullSecrets,omitempty"`
		Containers            []container       `yaml:"containers"`
		Volumes               []volume          `yaml:"volumes,omitempty"`
	}
	podSecurity struct {
		RunAsNonRoot       bool     `yaml:"runAsNonRoot"`
		RunAsUser          int64    `yaml:"runAsUser"`
		RunAsGroup         int64    `yaml:"runAsGroup"`
		FSGroup            int64    `yaml:"fsGroup"`
		SupplementalGroups []int64  `yaml:"supplementalGroups,omitempty"`
		SeccompProfile     *seccomp `yaml:"seccompProfile,omitempty"`
	}
	seccomp struct {
		Type string `yaml:"type"`
	}
	localRef struct {
		Name string `yaml:"name"`
	}
	container struct {
		Name            string             `yaml:"name"`
		Image           string             `yaml:"image"`
		Command         []string           `yaml:"command"`
		Args            []string           `yaml:"args"`
		Env             []envVar           `yaml:"env,omitempty"`
		Resources       resources          `yaml:"resources"`
		VolumeMounts    []volumeMount      `yaml:"volumeMounts,omitempty"`
		SecurityContext *containerSecurity `yaml:"securityContext,omitempty"`
	}
	envVar struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	}
	resources struct {
		Requests map[string]string `yaml:"requests,omitempty"`
		Limits   map[string]string `yaml:"limits,omitempty"`
	}
	volumeMount struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly,omitempty"`
	}
	containerSecurity struct {
		AllowPrivilegeEscalation bool          `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool          `yaml:"readOnlyRootFilesystem"`
		Capabilities             *capabilities `yaml:"capabilities,omitempty"`
	}
	capabilities struct {
		Drop []string `yaml:"drop"`
	}
	volume struct {
		Name      string           `yaml:"name"`
		ConfigMap *configMapVolume `yaml:"configMap,omitempty"`
		Secret    *secretVolume    `yaml:"secret,omitempty"`
		EmptyDir  *emptyDir        `yaml:"emptyDir,omitempty"`
	}
	configMapVolume struct {
		Name  string    `yaml:"name"`
		Items []keyPath `yaml:"items"`
	}
	secretVolume struct {
		SecretName string    `yaml:"secretName"`
		Items      []keyPath `yaml:"items"`
	}
	keyPath struct {
		Key  string `yaml:"key"`
		Path string `yaml:"path"`
		Mode *int32 `yaml:"mode,omitempty"`
	}
	emptyDir struct {
		SizeLimit string `yaml:"sizeLimit,omitempty"`
	}
)

// Manifest is one file of the manifests: its name in the output
// directory and its YAML.
type Manifest struct {
	Path string
	Data []byte
}

// kube writes the manifests of a plan.
type kube struct {
	p *Plan
	b *Bundle
	o KubeOptions
}

// Kubernetes writes a plan's manifests for kubectl apply -f DIR/jobs:
// the ConfigMap of the plan and its files, one Indexed Job per job of
// the plan, and the Job that assembles the multi-arch images.
func Kubernetes(p *Plan, b *Bundle, o KubeOptions) ([]Manifest, error) {
	k := &kube{p: p, b: b, o: o}
	if err := k.check(); err != nil {
		return nil, err
	}
	out := []Manifest{{"jobs/00-configmap.yaml", k.configMap()}}
	var longest int64
	for i, j := range p.Jobs {
		job, d := k.job(j)
		out = append(out, Manifest{fmt.Sprintf("jobs/%02d-build-%s.yaml", 10+i, j.Name), job})
		longest = max(longest, d)
	}
	out = append(out, Manifest{"jobs/90-assemble.yaml", k.assemble(longest)})
	return out, nil
}

// check refuses options the manifests cannot carry.
func (k *kube) check() error {
	o := k.o
	switch {
	case o.Image == "":
		return fmt.Errorf("fleet: no alpinist image: give --image REF (alpinist image builds it)")
	case o.Deadline < time.Minute:
		return fmt.Errorf("fleet: deadline %v: at least a minute", o.Deadline)
	case o.TCGFactor < 1:
		return fmt.Errorf("fleet: TCG factor %d: at least 1", o.TCGFactor)
	case o.Parallelism < 1:
		return fmt.Errorf("fleet: parallelism %d: at least 1", o.Parallelism)
	case o.Retries < 0:
		return fmt.Errorf("fleet: retries %d: 0 or more", o.Retries)
	case o.CPU == "" || o.Memory == "":
		return fmt.Errorf("fleet: the pods' CPU and memory are needed")
	}
	return nil
}

// name is an object's name.
func (k *kube) name(suffix string) string { return "alpinist-" + k.p.Run + "-" + suffix }

func (k *kube) meta(name string) meta {
	return meta{Name: name, Namespace: k.o.Namespace, Labels: map[string]string{partOfLabel: "alpinist", runLabel: k.p.Run}}
}

// configMapKey is the ConfigMap key of the bundle's i-th file.
func configMapKey(i int) string { return fmt.Sprintf("f%04d", i) }

func (k *kube) configMap() []byte {
	cm := object{APIVersion: "v1", Kind: "ConfigMap", Metadata: k.meta(k.name("plan")),
		Data: map[string]string{PlanFile: string(k.p.Marshal())}}
	for i, f := range k.b.Files {
		if f.Text() {
			cm.Data[configMapKey(i)] = string(f.Data)
			continue
		}
		if cm.BinaryData == nil {
			cm.BinaryData = map[string]string{}
		}
		cm.BinaryData[configMapKey(i)] = base64.StdEncoding.EncodeToString(f.Data)
	}
	return marshal(cm)
}

// volumes are the pods' volumes: the plan, the cache, /tmp and the
// registry credentials.
func (k *kube) volumes() []volume {
	items := []keyPath{{Key: PlanFile, Path: PlanFile}}
	for i, f := range k.b.Files {
		kp := keyPath{Key: configMapKey(i), Path: f.Rel}
		if f.Exec {
			m := int32(0o755)
			kp.Mode = &m
		}
		items = append(items, kp)
	}
	v := []volume{
		{Name: "plan", ConfigMap: &configMapVolume{Name: k.name("plan"), Items: items}},
		{Name: "cache", EmptyDir: &emptyDir{}},
		{Name: "tmp", EmptyDir: &emptyDir{}},
	}
	if k.o.RegistrySecret != "" {
		v = append(v, volume{Name: "registry", Secret: &secretVolume{SecretName: k.o.RegistrySecret,
			Items: []keyPath{{Key: ".dockerconfigjson", Path: "config.json"}}}})
	}
	return v
}

// container is the alpinist container running args.
func (k *kube) container(name string, args []string, kvm bool, small bool) container {
	c := container{
		Name: name, Image: k.o.Image, Command: []string{"alpinist"}, Args: args,
		Env: []envVar{{"ALPINIST_CACHE", cacheDir}, {"TMPDIR", tmpDir}, {"HOME", tmpDir}},
		VolumeMounts: []volumeMount{
			{Name: "plan", MountPath: planDir, ReadOnly: true},
			{Name: "cache", MountPath: cacheDir},
			{Name: "tmp", MountPath: tmpDir},
		},
		SecurityContext: &containerSecurity{ReadOnlyRootFilesystem: true, Capabilities: &capabilities{Drop: []string{"ALL"}}},
	}
	if k.o.RegistrySecret != "" {
		c.Env = append(c.Env, envVar{"DOCKER_CONFIG", dockerDir})
		c.VolumeMounts = append(c.VolumeMounts, volumeMount{Name: "registry", MountPath: dockerDir, ReadOnly: true})
	}
	if small {
		c.Resources = resources{Requests: map[string]string{"cpu": "100m", "memory": "128Mi"}, Limits: map[string]string{"memory": "512Mi"}}
	} else {
		c.Resources = resources{Requests: map[string]string{"cpu": k.o.CPU, "memory": k.o.Memory}, Limits: map[string]string{"memory": k.o.Memory}}
		if kvm && k.o.KVMResource != "" {
			c.Resources.Limits[k.o.KVMResource] = "1"
		}
	}
	return c
}

// pod is a pod spec on nodes of nodeArch.
func (k *kube) pod(nodeArch string, deadline int64, c container) podSpec {
	sc := &podSecurity{RunAsNonRoot: true, RunAsUser: uid, RunAsGroup: uid, FSGroup: uid, SeccompProfile: &seccomp{Type: "RuntimeDefault"}}
	if k.o.KVMGroup != 0 {
		sc.SupplementalGroups = []int64{k.o.KVMGroup}
	}
	ps := podSpec{RestartPolicy: "Never", ActiveDeadlineSeconds: deadline, NodeSelector: map[string]string{archLabel: nodeArch},
		SecurityContext: sc, Containers: []container{c}, Volumes: k.volumes()}
	if k.o.RegistrySecret != "" {
		ps.ImagePullSecrets = []localRef{{k.o.RegistrySecret}}
	}
	return ps
}

// deadline is one build's deadline in seconds in job j: TCGFactor
// times Deadline when it is emulated (no KVM for the job, or none asked
// for at all).
func (k *kube) deadline(j Job) int64 {
	d := int64(k.o.Deadline / time.Second)
	if !j.KVM || k.o.KVMResource == "" {
		d *= int64(k.o.TCGFactor)
	}
	return d
}

// job is the Indexed Job of j, and its deadline in seconds.
func (k *kube) job(j Job) ([]byte, int64) {
	n := len(j.Entries)
	par := min(n, k.o.Parallelism)
	per := k.deadline(j)
	// Every wave of pods, and one more for the retries.
	total := per * int64((n+par-1)/par+1)
	retries := k.o.Retries
	args := []string{"fleet", "worker", planDir + "/" + PlanFile, "--job", j.Name}
	spec := jobSpec{
		CompletionMode: "Indexed", Completions: n, Parallelism: par,
		BackoffLimitPerIndex: &retries, ActiveDeadlineSeconds: total, TTLSecondsAfterFinished: 7 * 24 * 3600,
		// A pod evicted or preempted does not count as a try.
		PodFailurePolicy: &podFailurePolicy{Rules: []podFailureRule{{Action: "Ignore", OnPodConditions: []podCondition{{Type: "DisruptionTarget"}}}}},
		Template: podTemplate{
			Metadata: meta{Labels: map[string]string{partOfLabel: "alpinist", runLabel: k.p.Run}},
			Spec:     k.pod(j.NodeArch, per, k.container("build", args, j.KVM, false)),
		},
	}
	return marshal(object{APIVersion: "batch/v1", Kind: "Job", Metadata: k.meta(k.name("build-" + j.Name)), Spec: spec}), total
}

// assemble is the Job that waits for every entry's result and pushes
// the multi-arch images.
func (k *kube) assemble(longest int64) []byte {
	wait := time.Duration(longest)*time.Second + 10*time.Minute
	args := []string{"fleet", "assemble", planDir + "/" + PlanFile, "--wait", wait.String()}
	backoff := 2
	spec := jobSpec{
		Completions: 1, Parallelism: 1, BackoffLimit: &backoff,
		ActiveDeadlineSeconds: int64((wait + 20*time.Minute) / time.Second), TTLSecondsAfterFinished: 7 * 24 * 3600,
		Template: podTemplate{
			Metadata: meta{Labels: map[string]string{partOfLabel: "alpinist", runLabel: k.p.Run}},
			Spec:     k.pod(k.p.Jobs[0].NodeArch, 0, k.container("assemble", args, false, true)),
		},
	}
	return marshal(object{APIVersion: "batch/v1", Kind: "Job", Metadata: k.meta(k.name("assemble")), Spec: spec})
}

// marshal writes an object's YAML.
func marshal(v any) []byte {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("fleet: manifest: %v", err))
	}
	enc.Close()
	return b.Bytes()
}

// WriteManifests writes the plan and the manifests into dir: plan.json,
// and each subdirectory (jobs, argo) whole, replacing what an earlier
// plan wrote there; nothing half-written is left.
func WriteManifests(dir string, p *Plan, files []Manifest) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	subs := map[string]string{}
	defer func() {
		for _, tmp := range subs {
			os.RemoveAll(tmp)
		}
	}()
	for _, f := range files {
		sub, base := path.Split(f.Path)
		sub = strings.TrimSuffix(sub, "/")
		tmp, ok := subs[sub]
		if !ok {
			var err error
			if tmp, err = os.MkdirTemp(dir, "."+sub+"-"); err != nil {
				return fmt.Errorf("fleet: %w", err)
			}
			if err := os.Chmod(tmp, 0o755); err != nil {
				return fmt.Errorf("fleet: %w", err)
			}
			subs[sub] = tmp
		}
		if err := os.WriteFile(filepath.Join(tmp, base), f.Data, 0o644); err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
	}
	if err := writeFileAtomic(filepath.Join(dir, PlanFile), p.Marshal()); err != nil {
		return err
	}
	for _, sub := range slices.Sorted(maps.Keys(subs)) {
		final := filepath.Join(dir, sub)
		if err := os.RemoveAll(final); err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
		if err := os.Rename(subs[sub], final); err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
		delete(subs, sub)
	}
	return nil
}

// writeFileAtomic writes a file through a temporary file and a rename.
func writeFileAtomic(file string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+"-")
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("fleet: %w", err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("fleet: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	return os.Rename(f.Name(), file)
}
