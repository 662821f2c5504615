package fleet

import (
	"strconv"
	"time"
)

// Argo Workflows objects, with the fields alpinist writes (the tests
// check them against Argo's JSON schema). Fields of type IntOrString are
// strings there.
type (
	argoSpec struct {
		Entrypoint            string         `yaml:"entrypoint"`
		ActiveDeadlineSeconds int64          `yaml:"activeDeadlineSeconds"`
		TTLStrategy           argoTTL        `yaml:"ttlStrategy"`
		SecurityContext       *podSecurity   `yaml:"securityContext"`
		ImagePullSecrets      []localRef     `yaml:"imagePullSecrets,omitempty"`
		Volumes               []volume       `yaml:"volumes"`
		Templates             []argoTemplate `yaml:"templates"`
	}
	argoTTL struct {
		SecondsAfterCompletion int `yaml:"secondsAfterCompletion"`
	}
	argoTemplate struct {
		Name                  string            `yaml:"name"`
		Inputs                *argoInputs       `yaml:"inputs,omitempty"`
		NodeSelector          map[string]string `yaml:"nodeSelector,omitempty"`
		ActiveDeadlineSeconds string            `yaml:"activeDeadlineSeconds,omitempty"`
		RetryStrategy         *argoRetry        `yaml:"retryStrategy,omitempty"`
		DAG                   *argoDAG          `yaml:"dag,omitempty"`
		Container             *container        `yaml:"container,omitempty"`
	}
	argoInputs struct {
		Parameters []argoParam `yaml:"parameters"`
	}
	argoParam struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value,omitempty"`
	}
	argoRetry struct {
		Limit       string `yaml:"limit"`
		RetryPolicy string `yaml:"retryPolicy"`
	}
	argoDAG struct {
		Tasks []argoTask `yaml:"tasks"`
	}
	argoTask struct {
		Name         string      `yaml:"name"`
		Template     string      `yaml:"template"`
		Arguments    *argoInputs `yaml:"arguments,omitempty"`
		WithItems    []int       `yaml:"withItems,omitempty"`
		Dependencies []string    `yaml:"dependencies,omitempty"`
	}
)

// Argo writes the plan as an Argo Workflow (with its ConfigMap, for
// kubectl create -f DIR/argo): a DAG of one task per entry, each job's
// on its nodes, and the assemble task after all of them.
func Argo(p *Plan, b *Bundle, o KubeOptions) ([]Manifest, error) {
	k := &kube{p: p, b: b, o: o}
	if err := k.check(); err != nil {
		return nil, err
	}
	sc := k.pod("", 0, container{}).SecurityContext
	spec := argoSpec{Entrypoint: "fleet", TTLStrategy: argoTTL{7 * 24 * 3600}, SecurityContext: sc, Volumes: k.volumes()}
	if o.RegistrySecret != "" {
		spec.ImagePullSecrets = []localRef{{o.RegistrySecret}}
	}
	dag := &argoDAG{}
	var after []string
	var longest int64
	for _, j := range p.Jobs {
		name := "build-" + j.Name
		per := k.deadline(j)
		longest += per * int64(len(j.Entries)+1)
		c := k.container("main", []string{"fleet", "worker", planDir + "/" + PlanFile, "--job", j.Name, "--index", "{{inputs.parameters.index}}"}, j.KVM, false)
		spec.Templates = append(spec.Templates, argoTemplate{
			Name: name, Inputs: &argoInputs{Parameters: []argoParam{{Name: "index"}}},
			NodeSelector:          map[string]string{archLabel: j.NodeArch},
			ActiveDeadlineSeconds: strconv.FormatInt(per, 10),
			RetryStrategy:         &argoRetry{Limit: strconv.Itoa(o.Retries), RetryPolicy: "Always"},
			Container:             &c,
		})
		items := make([]int, len(j.Entries))
		for i := range items {
			items[i] = i
		}
		dag.Tasks = append(dag.Tasks, argoTask{Name: name, Template: name, WithItems: items,
			Arguments: &argoInputs{Parameters: []argoParam{{Name: "index", Value: "{{item}}"}}}})
		after = append(after, name)
	}
	c := k.container("main", []string{"fleet", "assemble", planDir + "/" + PlanFile}, false, true)
	spec.Templates = append(spec.Templates, argoTemplate{Name: "assemble", NodeSelector: map[string]string{archLabel: p.Jobs[0].NodeArch},
		RetryStrategy: &argoRetry{Limit: "2", RetryPolicy: "Always"}, Container: &c})
	dag.Tasks = append(dag.Tasks, argoTask{Name: "assemble", Template: "assemble", Dependencies: after})
	spec.Templates = append([]argoTemplate{{Name: "fleet", DAG: dag}}, spec.Templates...)
	spec.ActiveDeadlineSeconds = longest + int64(30*time.Minute/time.Second)
	wf := object{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Metadata: k.meta(k.name("fleet")), Spec: spec}
	return []Manifest{{"argo/00-configmap.yaml", k.configMap()}, {"argo/10-workflow.yaml", marshal(wf)}}, nil
}
