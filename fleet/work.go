package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/alpinist/alpinist/assembler/oci"
	"github.com/alpinist/alpinist/builder"
	"github.com/alpinist/alpinist/regcache"
)

// Result is what a worker reports of its entry, in the cache repository
// under the plan's result tag.
type Result struct {
	Run   string `json:"run"`
	Job   string `json:"job"`
	Index int    `json:"index"`
	Entry
	// Image is the per-arch image pushed, Digest its manifest's digest.
	Image  string `json:"image"`
	Digest string `json:"digest"`
	// Cached: the rootfs came from the build cache (no VM booted).
	Cached bool `json:"cached"`
	// Downloaded and Shared count the packages fetched from the
	// repositories and from the shared cache.
	Downloaded int64 `json:"downloaded"`
	Shared     int64 `json:"shared"`
	// Seconds is the worker's time, build and push.
	Seconds float64 `json:"seconds"`
}

// WorkOptions tune Work.
type WorkOptions struct {
	// Root is where the plan's specs are (the plan file's directory).
	Root string
	// CacheDir is the local package cache ("": the default).
	CacheDir string
	// Accel forces kvm or tcg ("": probe).
	Accel string
	// Tool names alpinist in the outputs.
	Tool    string
	Log     *slog.Logger
	Console io.Writer
	// Progress shows the build's progress (nil: none).
	Progress builder.Progress
}

// Work builds one entry of a plan (job, index): it takes what the
// shared cache has, builds the OCI image, pushes it as
// REGISTRY/NAME:TAG-ARCH and its packages and rootfs to the cache, then
// its result.
func Work(ctx context.Context, p *Plan, job string, index int, o WorkOptions) (*Result, error) {
	start := time.Now()
	e, err := p.Entry(job, index)
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	specPath := filepath.Join(o.Root, filepath.FromSlash(e.Spec))
	sess, err := builder.Open(specPath, builder.OpenOptions{Arches: []string{e.Arch}, AnyArch: true, CacheDir: o.CacheDir, NeedCache: true, Log: o.Log})
	if err != nil {
		return nil, err
	}
	cache, err := regcache.Open(ctx, p.Cache, regcache.Options{Insecure: p.Insecure})
	if err != nil {
		return nil, err
	}
	out, err := os.MkdirTemp("", "alpinist-fleet-")
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	defer os.RemoveAll(out)
	rep, err := builder.Build(ctx, sess, builder.Options{
		OutDir: out, Outputs: []string{"oci"}, Layout: true, Tool: o.Tool, Accel: o.Accel,
		Console: o.Console, Log: o.Log, Progress: o.Progress, CacheFrom: cache, CacheTo: cache,
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: %s %s: %w", e.Spec, e.Arch, err)
	}
	defer rep.Close()
	ref := p.Image(e)
	d, err := oci.Push(ctx, rep.Layout, ref, oci.PushOptions{Insecure: p.Insecure})
	if err != nil {
		return nil, err
	}
	r := &Result{Run: p.Run, Job: job, Index: index, Entry: e, Image: ref, Digest: d.String(),
		Cached: len(rep.Cached) > 0, Downloaded: rep.Downloaded, Shared: rep.Shared}
	r.Seconds = time.Since(start).Seconds()
	data, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	if _, err := cache.PutResult(p.ResultTag(job, index), data); err != nil {
		return nil, err
	}
	return r, nil
}

// AssembleOptions tune Assemble.
type AssembleOptions struct {
	// Wait is how long to wait for results that are not there yet (0:
	// they must all be there).
	Wait time.Duration
	// Poll is the time between looks (default 15 s).
	Poll time.Duration
	Log  *slog.Logger
}

// Pushed is one multi-arch image pushed.
type Pushed struct {
	Ref    string
	Digest v1.Hash
	Arches []string
}

// Assemble waits for every entry's result, then pushes each spec's
// multi-arch index (REGISTRY/NAME:TAG) of the per-arch images, in the
// matrix's arch order.
func Assemble(ctx context.Context, p *Plan, o AssembleOptions) ([]Pushed, []Result, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Poll <= 0 {
		o.Poll = 15 * time.Second
	}
	cache, err := regcache.Open(ctx, p.Cache, regcache.Options{Insecure: p.Insecure})
	if err != nil {
		return nil, nil, err
	}
	results, err := waitResults(ctx, p, cache, o)
	if err != nil {
		return nil, nil, err
	}
	// results are by spec, then by arch: each spec's run is its index.
	var pushed []Pushed
	for rest := results; len(rest) > 0; {
		n := 1
		for n < len(rest) && rest[n].Name == rest[0].Name {
			n++
		}
		pu, err := pushIndex(ctx, p, rest[:n])
		if err != nil {
			return nil, results, err
		}
		pushed = append(pushed, pu)
		rest = rest[n:]
	}
	return pushed, results, nil
}

// waitResults reads every entry's result, looking again every o.Poll
// until o.Wait has passed.
func waitResults(ctx context.Context, p *Plan, cache *regcache.Cache, o AssembleOptions) ([]Result, error) {
	deadline := time.Now().Add(o.Wait)
	got := map[string]Result{}
	for {
		var missing []string
		for _, j := range p.Jobs {
			for i, e := range j.Entries {
				tag := p.ResultTag(j.Name, i)
				if _, ok := got[tag]; ok {
					continue
				}
				data, err := cache.GetResult(tag)
				if errors.Is(err, regcache.ErrMiss) {
					missing = append(missing, fmt.Sprintf("%s/%s (job %s, index %d)", e.Name, e.Arch, j.Name, i))
					continue
				}
				if err != nil {
					return nil, err
				}
				var r Result
				if err := strictJSON(data, &r); err != nil {
					return nil, fmt.Errorf("fleet: result %s: %w", tag, err)
				}
				if r.Run != p.Run || r.Entry != e || r.Job != j.Name || r.Index != i {
					return nil, fmt.Errorf("fleet: result %s is of %s/%s (run %s), not of %s/%s", tag, r.Name, r.Arch, r.Run, e.Name, e.Arch)
				}
				got[tag] = r
			}
		}
		if len(missing) == 0 {
			break
		}
		if !time.Now().Before(deadline) {
			return nil, fmt.Errorf("fleet: run %s: %d of %d builds have no result in %s: %s", p.Run, len(missing), p.Size(), p.Cache, strings.Join(missing, ", "))
		}
		o.Log.Info("waiting for the builds", "run", p.Run, "left", len(missing), "of", p.Size())
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(o.Poll, time.Until(deadline))):
		}
	}
	// In the matrix's order: by spec, then by arch.
	var out []Result
	for _, n := range p.Names() {
		for _, a := range p.Arch {
			for _, r := range got {
				if r.Name == n && r.Arch == a {
					out = append(out, r)
				}
			}
		}
	}
	return out, nil
}

// pushIndex pushes the multi-arch index of one spec's results, in
// their order.
func pushIndex(ctx context.Context, p *Plan, results []Result) (Pushed, error) {
	specName := results[0].Name
	var nopts []name.Option
	if p.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	ref := p.Index(specName)
	tag, err := name.NewTag(ref, nopts...)
	if err != nil {
		return Pushed{}, fmt.Errorf("fleet: %s: %w", ref, err)
	}
	ix := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	pu := Pushed{Ref: ref}
	for _, r := range results {
		a := r.Arch
		desc, err := remote.Get(tag.Context().Digest(r.Digest), ropts...)
		if err != nil {
			return Pushed{}, fmt.Errorf("fleet: %s %s: the image %s@%s: %w", specName, a, tag.Context(), r.Digest, err)
		}
		m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
		if err != nil || desc.MediaType != types.OCIManifestSchema1 {
			return Pushed{}, fmt.Errorf("fleet: %s %s: %s@%s is not an OCI image manifest (%s)", specName, a, tag.Context(), r.Digest, desc.MediaType)
		}
		plat, err := oci.Platform(a)
		if err != nil {
			return Pushed{}, err
		}
		// As alpinist build writes a multi-arch index: the images'
		// annotations (the same for every arch) on the index.
		if ix.Annotations == nil {
			ix.Annotations = m.Annotations
		}
		ix.Manifests = append(ix.Manifests, v1.Descriptor{MediaType: desc.MediaType, Size: desc.Size, Digest: desc.Digest, Platform: &plat})
		pu.Arches = append(pu.Arches, a)
	}
	raw, err := json.Marshal(ix)
	if err != nil {
		return Pushed{}, err
	}
	if err := remote.Put(tag, rawIndex(raw), ropts...); err != nil {
		return Pushed{}, fmt.Errorf("fleet: push %s: %w", ref, err)
	}
	pu.Digest, _, err = v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return Pushed{}, err
	}
	return pu, nil
}

// rawIndex is an index manifest to put as it is.
type rawIndex []byte

func (r rawIndex) RawManifest() ([]byte, error)        { return r, nil }
func (r rawIndex) MediaType() (types.MediaType, error) { return types.OCIImageIndex, nil }
