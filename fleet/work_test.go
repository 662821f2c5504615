package fleet

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/alpinist/alpinist/regcache"
)

// TestAssemble: assemble waits for results that come late, pushes the
// index of the per-arch images in the matrix's arch order with their
// platforms, and refuses a result that is not of its entry; without
// results it names the missing builds.
func TestAssemble(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	p, err := ParsePlan([]byte(`{"version":1,"run":"r1","matrix":"m.yaml","registry":"`+host+`/team","cache":"`+host+`/team/cache","tag":"v1","insecure":true,
		"arch":["aarch64","x86_64"],
		"jobs":[{"name":"amd64","nodeArch":"amd64","kvm":true,"entries":[{"spec":"web.yaml","name":"web","arch":"x86_64"}]},
		        {"name":"tcg","nodeArch":"amd64","kvm":false,"entries":[{"spec":"web.yaml","name":"web","arch":"aarch64"}]}]}`), "plan.json")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cache, err := regcache.Open(ctx, p.Cache, regcache.Options{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	put := func(job string, index int, r Result) {
		t.Helper()
		data, _ := json.Marshal(r)
		if _, err := cache.PutResult(p.ResultTag(job, index), data); err != nil {
			t.Error(err)
		}
	}
	results := map[string]Result{}
	for _, j := range p.Jobs {
		e := j.Entries[0]
		img, err := random.Image(64, 1)
		if err != nil {
			t.Fatal(err)
		}
		img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
		ref, _ := name.ParseReference(p.Image(e), name.Insecure)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		results[j.Name] = Result{Run: p.Run, Job: j.Name, Index: 0, Entry: e, Image: p.Image(e), Digest: d.String()}
	}

	if _, _, err := Assemble(ctx, p, AssembleOptions{}); err == nil || !strings.Contains(err.Error(), "2 of 2 builds have no result") || !strings.Contains(err.Error(), "web/aarch64 (job tcg, index 0)") {
		t.Errorf("without results: %v", err)
	}
	put("amd64", 0, results["amd64"])
	go func() {
		time.Sleep(300 * time.Millisecond)
		put("tcg", 0, results["tcg"])
	}()
	pushed, got, err := Assemble(ctx, p, AssembleOptions{Wait: 10 * time.Second, Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Arch != "aarch64" || got[1].Arch != "x86_64" || len(pushed) != 1 || pushed[0].Ref != host+"/team/web:v1" {
		t.Fatalf("results %+v, pushed %+v", got, pushed)
	}
	ref, _ := name.ParseReference(pushed[0].Ref, name.Insecure)
	idx, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := idx.IndexManifest()
	if d, _ := idx.Digest(); d != pushed[0].Digest || len(m.Manifests) != 2 ||
		m.Manifests[0].Platform.String() != "linux/arm64/v8" || m.Manifests[0].Digest.String() != results["tcg"].Digest ||
		m.Manifests[1].Platform.String() != "linux/amd64" || m.Manifests[1].Digest.String() != results["amd64"].Digest {
		t.Errorf("index %s: %+v", d, m.Manifests)
	}

	// A result of another entry under this entry's tag is refused.
	other := *p
	other.Run = "r2"
	bad := results["amd64"]
	bad.Run, bad.Arch = "r2", "aarch64"
	data, _ := json.Marshal(bad)
	if _, err := cache.PutResult(other.ResultTag("amd64", 0), data); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Assemble(ctx, &other, AssembleOptions{}); err == nil || !strings.Contains(err.Error(), "not of web/x86_64") {
		t.Errorf("a foreign result: %v", err)
	}
}
