package oci

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// authRegistry is an in-memory registry that wants user:secret.
func authRegistry(t *testing.T) string {
	reg := registry.New(registry.WithReferrersSupport(true))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != "user" || p != "secret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// dockerConfig points the default keychain at a config.json with creds
// for host (and nowhere else).
func dockerConfig(t *testing.T, host, env string) {
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("user:secret"))
	cfg := `{"auths":{"` + host + `":{"auth":"` + auth + `"}}}`
	p := filepath.Join(dir, "config.json")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("DOCKER_CONFIG", "")
	t.Setenv("REGISTRY_AUTH_FILE", "")
	switch env {
	case "DOCKER_CONFIG":
		t.Setenv(env, dir)
	case "REGISTRY_AUTH_FILE":
		t.Setenv(env, p)
	}
}

func TestPush(t *testing.T) {
	for _, tc := range []struct {
		arches []string
		creds  string
	}{{[]string{"x86_64"}, "DOCKER_CONFIG"}, {[]string{"x86_64", "aarch64"}, "REGISTRY_AUTH_FILE"}} {
		t.Run(strings.Join(tc.arches, "+"), func(t *testing.T) {
			host := authRegistry(t)
			dir, _ := layoutOf(t, fullOCI, tc.arches...)
			top, refs, _ := ReadLayout(dir)
			ref := host + "/alpinist/web:1.0"

			// Without credentials: refused, and the error says so.
			dockerConfig(t, "elsewhere.example", "DOCKER_CONFIG")
			if _, err := Push(context.Background(), dir, ref, PushOptions{Insecure: true}); err == nil || !strings.Contains(err.Error(), "401") && !strings.Contains(err.Error(), "UNAUTHORIZED") {
				t.Errorf("push without credentials: %v", err)
			}

			dockerConfig(t, host, tc.creds)
			var progressed bool
			d, err := Push(context.Background(), dir, ref, PushOptions{Insecure: true, Progress: func(done, total int64) { progressed = done > 0 }})
			if err != nil {
				t.Fatal(err)
			}
			if d != top.Digest || !progressed {
				t.Errorf("pushed %s (progress %v), want %s", d, progressed, top.Digest)
			}
			r, _ := name.ParseReference(ref, name.Insecure)
			desc, err := remote.Head(r, remote.WithAuth(basicAuth{}))
			if err != nil {
				t.Fatal(err)
			}
			if desc.Digest != top.Digest {
				t.Errorf("the registry has %s, want %s", desc.Digest, top.Digest)
			}
			// The SBOMs are referrers of the images.
			for _, rd := range refs {
				if _, err := remote.Head(r.Context().Digest(rd.Digest.String()), remote.WithAuth(basicAuth{})); err != nil {
					t.Errorf("SBOM %s not pushed: %v", rd.Digest, err)
				}
			}
		})
	}
}

type basicAuth struct{}

func (basicAuth) Authorization() (*authn.AuthConfig, error) {
	return &authn.AuthConfig{Username: "user", Password: "secret"}, nil
}

func TestPushRefusals(t *testing.T) {
	dir, _ := layoutOf(t, fullOCI, "x86_64")
	for ref, want := range map[string]string{
		"registry.example.org/web:1.0": "--insecure is only for a registry on localhost",
		"UPPER CASE":                   "is not an image reference",
	} {
		if _, err := Push(context.Background(), dir, ref, PushOptions{Insecure: true}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", ref, err, want)
		}
	}
	if _, err := Push(context.Background(), t.TempDir(), "localhost:1/x", PushOptions{Insecure: true}); err == nil || !strings.Contains(err.Error(), "not an OCI image layout") {
		t.Errorf("no layout: %v", err)
	}
	for host, want := range map[string]bool{"localhost:5000": true, "127.0.0.1:5000": true, "[::1]:5000": true, "127.8.0.1": true, "example.org": false, "10.0.0.1:5000": false, "localhost.example.org": false} {
		if Loopback(host) != want {
			t.Errorf("Loopback(%q) = %v", host, !want)
		}
	}
}
