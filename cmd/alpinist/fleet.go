package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/alpinist/alpinist/arch"
	"github.com/alpinist/alpinist/fleet"
	"github.com/alpinist/alpinist/spec"
)

func newFleetCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Build every spec × arch of a matrix: on Kubernetes, or here",
		Long: `A fleet builds many specs for many arches. A matrix file names them:

    specs: [web.yaml, db/db.yaml]    # relative to the matrix's directory
    arch: [x86_64, aarch64]          # every spec is built for every arch

Each spec × arch is one build. It takes what the shared registry cache
has (build --cache-from), builds the spec's OCI image, pushes it as
REGISTRY/NAME:TAG-ARCH and feeds the cache (build --cache-to); a final
step pushes each spec's multi-arch index as REGISTRY/NAME:TAG.

    fleet plan MATRIX -o DIR        writes the Kubernetes manifests (Indexed
                                    Jobs, or an Argo Workflow with --argo)
    fleet run --local MATRIX        runs the same plan as processes here
    fleet worker, fleet assemble    the steps the pods run
    fleet image                     the image the pods run, of this host's QEMU

See docs/scale-out.md.`,
	}
	cmd.AddCommand(newFleetPlanCmd(e), newFleetRunCmd(e), newFleetWorkerCmd(e), newFleetAssembleCmd(e), newFleetImageCmd(e))
	return cmd
}

type planFlags struct {
	registry, cache, tag, run string
	nodes                     []string
	insecure                  bool
}

func (f *planFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.registry, "registry", "", "where images go: `HOST[:PORT][/PATH]` (REGISTRY/NAME:TAG per spec; required)")
	fl.StringVar(&f.cache, "cache", "", "the shared cache's repository `REF` (default REGISTRY/alpinist-cache)")
	fl.StringVar(&f.tag, "tag", "latest", "the images' `TAG` (each arch's image is NAME:TAG-ARCH)")
}

func (f *planFlags) plan(m *fleet.Matrix, b *fleet.Bundle) (*fleet.Plan, error) {
	o := fleet.PlanOptions{Registry: f.registry, Cache: f.cache, Tag: f.tag, NodeArches: f.nodes, Run: f.run, Insecure: f.insecure}
	if b != nil {
		o.Content = b.Sum()
	}
	return fleet.NewPlan(m, o)
}

func newFleetPlanCmd(e *env) *cobra.Command {
	var f planFlags
	ko := fleet.DefaultKubeOptions()
	var out string
	var argo bool
	cmd := &cobra.Command{
		Use:   "plan MATRIX -o DIR",
		Short: "Write the Kubernetes manifests of a fleet",
		Long: `plan reads the matrix and its specs and writes into DIR:

    plan.json             the plan: every spec × arch, by job and index
    jobs/                 for kubectl apply -f DIR/jobs:
      00-configmap.yaml     the plan, the matrix and the specs' files
      NN-build-JOB.yaml     one Indexed Job per job: completion index I
                            builds the job's I-th entry
      90-assemble.yaml      a Job that waits for every build's result
                            and pushes each spec's multi-arch index
    argo/                 with --argo, for kubectl create -f DIR/argo: the
                          ConfigMap and an Argo Workflow of the same steps

Jobs: an arch runs with KVM on nodes of its own arch (kubernetes.io/arch)
when --node-arch lists it; its pods ask for /dev/kvm through the
--kvm-resource (KubeVirt's device plugin by default). The other arches
are emulated (TCG) on nodes of the first --node-arch, with --tcg-factor
times the --deadline.

The specs' files (the specs, what they extend, keys, files: sources)
must be inside the matrix's directory, and repositories must be HTTP(S):
the ConfigMap carries the files, at most 1 MiB in all. The run name
(--run, default a hash of the plan and the files) names the objects:
give each run its own (--run $CI_PIPELINE_ID) to apply the same matrix
again. The pods run --image, whose entrypoint may be anything: they run
alpinist from its PATH.`,
		Example: `  alpinist fleet plan fleet.yaml -o k8s --registry registry.example.org/team --image registry.example.org/team/alpinist:1.0
  kubectl apply -f k8s/jobs
  alpinist fleet plan fleet.yaml -o k8s --registry registry.example.org/team --node-arch amd64,arm64 --argo --run "$CI_PIPELINE_ID"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("-o DIR is required")
			}
			m, err := fleet.LoadMatrix(args[0])
			if err != nil {
				return err
			}
			b, err := fleet.NewBundle(m)
			if err != nil {
				return err
			}
			p, err := f.plan(m, b)
			if err != nil {
				return err
			}
			if ko.Image == "" {
				ko.Image = p.Registry + "/alpinist:" + versionString()
			}
			files, err := fleet.Kubernetes(p, b, ko)
			if err != nil {
				return err
			}
			if argo {
				af, err := fleet.Argo(p, b, ko)
				if err != nil {
					return err
				}
				files = append(files, af...)
			}
			if err := fleet.WriteManifests(out, p, files); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "run %s: %d builds (%d specs × %d arches), %d files in %d KiB\n", p.Run, p.Size(), len(m.Specs), len(m.Arch), len(b.Files), (b.Size()+1023)>>10)
			for _, j := range p.Jobs {
				how := "KVM (" + ko.KVMResource + ")"
				switch {
				case !j.KVM:
					how = "TCG"
				case ko.KVMResource == "":
					how = "TCG (no --kvm-resource)"
				}
				var arches []string
				for _, en := range j.Entries {
					if !slices.Contains(arches, en.Arch) {
						arches = append(arches, en.Arch)
					}
				}
				fmt.Fprintf(e.stdout, "  job build-%s: %d builds of %s on %s nodes, %s\n", j.Name, len(j.Entries), strings.Join(arches, ", "), j.NodeArch, how)
			}
			fmt.Fprintf(e.stdout, "wrote %s\napply: kubectl apply -f %s\n", out, filepath.Join(out, "jobs"))
			if argo {
				fmt.Fprintf(e.stdout, "or, with Argo Workflows: kubectl create -f %s\n", filepath.Join(out, "argo"))
			}
			return nil
		},
	}
	f.add(cmd)
	fl := cmd.Flags()
	fl.StringVarP(&out, "output-dir", "o", "", "output `DIR` (required)")
	fl.StringSliceVar(&f.nodes, "node-arch", []string{"amd64"}, "the cluster's node arches (kubernetes.io/arch), the first for emulated builds")
	fl.StringVar(&f.run, "run", "", "the run's `NAME` (lowercase, digits, '-', at most 20; default: a hash of the plan)")
	fl.StringVar(&ko.Image, "image", "", "the alpinist image the pods run (default REGISTRY/alpinist:VERSION)")
	fl.StringVar(&ko.Namespace, "namespace", "", "the objects' namespace (default: kubectl's)")
	fl.StringVar(&ko.KVMResource, "kvm-resource", ko.KVMResource, "the extended resource giving a pod /dev/kvm (\"\": ask for none)")
	fl.Int64Var(&ko.KVMGroup, "kvm-group", 0, "a supplementary `GID` of the pods: the group owning /dev/kvm on the nodes, if it is not world-writable there")
	fl.StringVar(&ko.RegistrySecret, "registry-secret", "", "a kubernetes.io/dockerconfigjson Secret `NAME`: credentials for the pushes and the image pull")
	fl.DurationVar(&ko.Deadline, "deadline", ko.Deadline, "time allowed for one build with KVM")
	fl.IntVar(&ko.TCGFactor, "tcg-factor", ko.TCGFactor, "an emulated build is allowed this many times the deadline")
	fl.IntVar(&ko.Parallelism, "parallelism", ko.Parallelism, "pods of one job running at once")
	fl.StringVar(&ko.CPU, "cpu", ko.CPU, "CPU request of a build pod")
	fl.StringVar(&ko.Memory, "memory", ko.Memory, "memory request and limit of a build pod")
	fl.IntVar(&ko.Retries, "retries", ko.Retries, "tries after a failed one, per build")
	fl.BoolVar(&argo, "argo", false, "also write an Argo Workflow (DIR/argo)")
	return cmd
}

func newFleetWorkerCmd(e *env) *cobra.Command {
	var job, root, accel string
	index := -1
	cmd := &cobra.Command{
		Use:   "worker PLAN --job JOB [--index N]",
		Short: "Build one entry of a fleet's plan (what a fleet's pod runs)",
		Long: `worker builds the entry N of the plan's job JOB: with the registry cache
(build --cache-from and --cache-to the plan's cache), it builds the
spec's OCI image for the entry's arch, pushes it as REGISTRY/NAME:TAG-ARCH,
then its result (tag fleet-RUN-JOB-N in the cache repository), which
fleet assemble waits for. N defaults to $JOB_COMPLETION_INDEX, which an
Indexed Job's pods have. The specs are found relative to the plan's
directory (--root DIR to look elsewhere).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if job == "" {
				return fmt.Errorf("--job is required")
			}
			if index < 0 {
				v := os.Getenv("JOB_COMPLETION_INDEX")
				n, err := strconv.Atoi(v)
				if err != nil || n < 0 {
					return fmt.Errorf("no --index, and $JOB_COMPLETION_INDEX is %q", v)
				}
				index = n
			}
			p, err := fleet.ReadPlan(args[0])
			if err != nil {
				return err
			}
			if root == "" {
				root = filepath.Dir(args[0])
			}
			var console io.Writer
			if e.verbose {
				console = e.stderr
			}
			r, err := fleet.Work(cmd.Context(), p, job, index, fleet.WorkOptions{
				Root: root, Accel: accel, Tool: "alpinist-" + versionString(), Log: e.log, Console: console,
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "pushed: %s@%s (rootfs %s; packages: %d downloaded, %d from the shared cache; %.1fs)\n",
				r.Image, r.Digest, how(*r), r.Downloaded, r.Shared, r.Seconds)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&job, "job", "", "the plan's `JOB` (required)")
	fl.IntVar(&index, "index", -1, "the entry's index in the job (default $JOB_COMPLETION_INDEX)")
	fl.StringVar(&root, "root", "", "the `DIR` the plan's specs are in (default: the plan's)")
	fl.StringVar(&accel, "accel", "", "force kvm or tcg (default: probe KVM)")
	return cmd
}

// how says how a result's rootfs was made.
func how(r fleet.Result) string {
	if r.Cached {
		return "from the build cache"
	}
	return "built"
}

func newFleetAssembleCmd(e *env) *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "assemble PLAN [--wait DURATION]",
		Short: "Push each spec's multi-arch image once its builds are done",
		Long: `assemble waits (up to --wait) for the result of every entry of the plan
in the cache repository, then pushes each spec's multi-arch OCI index,
REGISTRY/NAME:TAG, of the per-arch images the workers pushed, in the
matrix's arch order. It fails naming the builds that have no result.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := fleet.ReadPlan(args[0])
			if err != nil {
				return err
			}
			pushed, results, err := fleet.Assemble(cmd.Context(), p, fleet.AssembleOptions{Wait: wait, Log: e.log})
			if err != nil {
				return err
			}
			printFleet(e, results, pushed)
			return nil
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 0, "how long to wait for builds without a result")
	return cmd
}

// printFleet prints a fleet's results and the images pushed.
func printFleet(e *env, results []fleet.Result, pushed []fleet.Pushed) {
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SPEC\tARCH\tROOTFS\tDOWNLOADED\tSHARED\tTIME")
	var booted, cached int
	var down, shared int64
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%.1fs\n", r.Name, r.Arch, how(r), r.Downloaded, r.Shared, r.Seconds)
		if r.Cached {
			cached++
		} else {
			booted++
		}
		down += r.Downloaded
		shared += r.Shared
	}
	tw.Flush()
	for _, p := range pushed {
		fmt.Fprintf(e.stdout, "pushed: %s@%s (%s)\n", p.Ref, p.Digest, strings.Join(p.Arches, ", "))
	}
	fmt.Fprintf(e.stdout, "fleet: %d builds: %d built in a VM, %d from the build cache; packages: %d downloaded, %d from the shared cache\n",
		len(results), booted, cached, down, shared)
}

// selfExe is the alpinist binary the local fleet's workers run.
var selfExe = os.Executable

func newFleetRunCmd(e *env) *cobra.Command {
	var f planFlags
	var local bool
	var jobs int
	var accel string
	cmd := &cobra.Command{
		Use:   "run --local MATRIX --registry HOST[:PORT] [--insecure]",
		Short: "Run a fleet's plan as processes on this machine",
		Long: `run --local plans the matrix as fleet plan does and runs its steps here:
one alpinist fleet worker process per spec × arch (--jobs at once), each
with an empty cache of its own as a pod has, so that everything shared
goes through the registry; then fleet assemble, which pushes each spec's
multi-arch image as REGISTRY/NAME:TAG. A second run of an unchanged
matrix takes every rootfs and package from the registry cache and boots
no VM. --insecure allows plain HTTP, to a registry on this machine only.`,
		Example: `  alpinist fleet run --local fleet.yaml --registry localhost:5000 --insecure`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !local {
				return fmt.Errorf("fleet run runs here only, with --local: for Kubernetes, write the manifests with fleet plan and kubectl apply them")
			}
			m, err := fleet.LoadMatrix(args[0])
			if err != nil {
				return err
			}
			var nonce [4]byte
			rand.Read(nonce[:])
			f.run = "local-" + hex.EncodeToString(nonce[:])
			p, err := f.plan(m, nil)
			if err != nil {
				return err
			}
			return runLocal(cmd.Context(), e, m, p, jobs, accel)
		},
	}
	f.add(cmd)
	fl := cmd.Flags()
	fl.BoolVar(&local, "local", false, "run here (required: the only way fleet run runs)")
	fl.BoolVar(&f.insecure, "insecure", false, "plain HTTP, for a registry on localhost only")
	fl.IntVar(&jobs, "jobs", max(1, runtime.NumCPU()/2), "workers at once (each build VM has up to 2 CPUs)")
	fl.StringVar(&accel, "accel", "", "force kvm or tcg in the workers (default: probe KVM)")
	return cmd
}

// runLocal runs every entry of p as a worker process, then assembles.
func runLocal(ctx context.Context, e *env, m *fleet.Matrix, p *fleet.Plan, jobs int, accel string) error {
	if jobs < 1 {
		return fmt.Errorf("--jobs %d: at least 1", jobs)
	}
	exe, err := selfExe()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "alpinist-fleet-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	planPath := filepath.Join(tmp, fleet.PlanFile)
	if err := os.WriteFile(planPath, p.Marshal(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "fleet: run %s: %d builds, %d at once\n", p.Run, p.Size(), jobs)
	type work struct {
		job   string
		index int
		entry fleet.Entry
	}
	var todo []work
	for _, j := range p.Jobs {
		for i, en := range j.Entries {
			todo = append(todo, work{j.Name, i, en})
		}
	}
	var mu sync.Mutex
	var failed []string
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	for _, w := range todo {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			args := []string{"fleet", "worker", planPath, "--job", w.job, "--index", strconv.Itoa(w.index), "--root", m.Dir}
			if accel != "" {
				args = append(args, "--accel", accel)
			}
			// The workers log as this run does.
			args = append(args, "--log-format", e.logFormat)
			if e.verbose {
				args = append(args, "-v")
			} else if e.quiet {
				args = append(args, "-q")
			}
			c := exec.CommandContext(ctx, exe, args...)
			// Stopped, a worker is told as Ctrl-C tells alpinist, and
			// stops its VM and removes its files; killed if it has not
			// after 15 s.
			c.Cancel = func() error { return c.Process.Signal(syscall.SIGTERM) }
			c.WaitDelay = 15 * time.Second
			c.Env = append(os.Environ(), "ALPINIST_CACHE="+filepath.Join(tmp, fmt.Sprintf("cache-%s-%d", w.job, w.index)), "JOB_COMPLETION_INDEX=")
			prefix := w.entry.Name + "/" + w.entry.Arch + ": "
			pw := &prefixWriter{w: e.stderr, mu: &mu, prefix: prefix}
			c.Stdout, c.Stderr = pw, pw
			err := c.Run()
			pw.flush()
			if err != nil {
				mu.Lock()
				failed = append(failed, fmt.Sprintf("%s%v", prefix, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		return fmt.Errorf("fleet: %d of %d builds failed (their output is above):\n  %s", len(failed), len(todo), strings.Join(failed, "\n  "))
	}
	pushed, results, err := fleet.Assemble(ctx, p, fleet.AssembleOptions{Log: e.log})
	if err != nil {
		return err
	}
	printFleet(e, results, pushed)
	return nil
}

// prefixWriter writes whole lines, each with a prefix, under a lock
// shared by the workers.
type prefixWriter struct {
	w      io.Writer
	mu     *sync.Mutex
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := strings.IndexByte(string(p.buf), '\n')
		if i < 0 {
			break
		}
		p.mu.Lock()
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, strings.TrimRight(string(p.buf[:i]), "\r"))
		p.mu.Unlock()
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

func (p *prefixWriter) flush() {
	if len(p.buf) > 0 {
		p.Write([]byte("\n"))
	}
}

func newFleetImageCmd(e *env) *cobra.Command {
	var out, alpinist, pushRef string
	var arches []string
	var insecure bool
	cmd := &cobra.Command{
		Use:   "image -o DIR [--arch A,...] [--push REF]",
		Short: "Make the alpinist image a fleet's pods run, of this host's QEMU",
		Long: `image makes an alpinist image for a fleet's pods without a Dockerfile,
Docker or Alpine's mirror: a distroless image of this host's files,
written as alpinist assemble writes an image (canonical, reproducible from
the same files):

    /usr/bin/alpinist          this alpinist (or --alpinist FILE)
    qemu-system-*              the emulators of --arch (default: every
                               arch whose emulator is installed here)
    their libraries            as ldd finds them, links followed
    QEMU's modules, firmware   its module directory, and the directories
                               qemu-system-* -L help lists
    /etc/ssl/certs             this host's CA bundle
    /etc/passwd, /etc/group    the user alpinist (65532), which it runs as

with the entrypoint /usr/bin/alpinist, the working directory /tmp, and
ALPINIST_CACHE=/var/cache/alpinist, TMPDIR=/tmp, HOME=/tmp; as an OCI
layout (DIR/alpinist.oci, which --push pushes) and a docker-archive (for
podman load, docker load or kind load image-archive). Its arch is this
host's: make it on a host of each node arch. Alpine's own image
(Alpine's QEMU, alpinist built static) is deploy/alpinist-image.yaml,
built with make image where Alpine's mirror is reachable.`,
		Example: `  alpinist fleet image -o out --push registry.example.org/team/alpinist:1.0
  alpinist fleet image -o out --arch x86_64,aarch64,armv7`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("-o DIR is required")
			}
			if alpinist == "" {
				exe, err := selfExe()
				if err != nil {
					return err
				}
				alpinist = exe
			}
			if len(arches) == 0 {
				for _, a := range arch.All {
					if _, err := exec.LookPath(a.QEMU.Binary); err == nil && a.QEMU.Tested {
						arches = append(arches, a.Name)
					}
				}
				if len(arches) == 0 {
					return fmt.Errorf("no qemu-system-* is installed here (alpinist doctor says which)")
				}
			}
			return fleetImage(cmd.Context(), e, out, fleet.HostImage{Alpinist: alpinist, Arches: arches}, pushRef, insecure)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&out, "output-dir", "o", "", "output `DIR` (required): DIR/alpinist.oci and DIR/alpinist-ARCH.docker.tar")
	fl.StringSliceVar(&arches, "arch", nil, "the arches whose QEMU goes in (default: every one installed here)")
	fl.StringVar(&alpinist, "alpinist", "", "the alpinist binary to put in `FILE` (default: this one)")
	fl.StringVar(&pushRef, "push", "", "push the image to the registry `REF` at the end")
	fl.BoolVar(&insecure, "insecure", false, "with --push: plain HTTP, for a registry on localhost only")
	return cmd
}

// fleetImage writes the host image's tar, then its OCI layout as
// assemble writes one.
func fleetImage(ctx context.Context, e *env, out string, h fleet.HostImage, pushRef string, insecure bool) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(out, ".alpinist-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	tarPath := filepath.Join(tmp, "rootfs.tar")
	f, err := os.Create(tarPath)
	if err != nil {
		return err
	}
	err = h.WriteTar(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	sp := &spec.Spec{Name: "alpinist", Disk: &spec.Disk{}, OCI: spec.OCI{
		Entrypoint: []string{"/usr/bin/alpinist"}, User: fleet.ImageUser, WorkDir: "/tmp",
		Env: map[string]string{"ALPINIST_CACHE": fleet.ImageCacheDir, "TMPDIR": "/tmp", "HOME": "/tmp"},
		Tag: "alpinist:" + versionString(),
	}}
	src := source{arch.Host(), func() (io.ReadCloser, error) { return os.Open(tarPath) }}
	if err := assembleInto(ctx, e, tarPath, sp, assembleFlags{out: out, outputs: []string{"oci", "docker-archive"}}, []source{src}); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "qemu: %s\n", strings.Join(h.Arches, ", "))
	if pushRef != "" {
		return push(ctx, e, filepath.Join(out, "alpinist.oci"), pushRef, insecure)
	}
	return nil
}
