package apkfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/alpinist/alpinist/apk/sign"
	"github.com/alpinist/alpinist/internal/testkit/minirootfs"
)

// TestRealPackages reads every package of Alpine's real fixtures (v3.19
// x86_64, the unindexed v3.19 extras, v3.13 aarch64 and the single ones)
// as an install does: signature, control and data hashes, .PKGINFO. apk
// accepts them all; so must we.
func TestRealPackages(t *testing.T) {
	real := minirootfs.Real(t)
	keys, err := sign.LoadKeyring(filepath.Join(real, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, glob := range []string{"repos/*/*/*.apk", "apk/*/*.apk"} {
		m, _ := filepath.Glob(filepath.Join(real, glob))
		files = append(files, m...)
	}
	if len(files) < 260 {
		t.Fatalf("only %d real packages found under %s", len(files), real)
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Verify(fh, keys)
		fh.Close()
		rel, _ := filepath.Rel(real, f)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if p.Name+"-"+p.Version+".apk" != filepath.Base(f) {
			t.Errorf("%s: .PKGINFO says %s-%s", rel, p.Name, p.Version)
		}
	}
	t.Logf("%d real packages verified", len(files))
}
