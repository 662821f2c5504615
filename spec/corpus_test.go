package spec

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadSpecCorpus loads every spec of testdata/specs/bad: each must fail
// with the error its first line ("# want: LINE:COLUMN: message") names,
// at that position of that file.
func TestBadSpecCorpus(t *testing.T) {
	files, err := filepath.Glob("../testdata/specs/bad/*.yaml")
	if err != nil || len(files) < 40 {
		t.Fatalf("the bad spec corpus has %d specs (%v), want at least 40", len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			fh, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			line, _ := bufio.NewReader(fh).ReadString('\n')
			fh.Close()
			want, ok := strings.CutPrefix(strings.TrimSpace(line), "# want: ")
			if !ok {
				t.Fatalf("first line %q is not # want: LINE:COLUMN: message", line)
			}
			_, err = Load(f)
			if err == nil {
				t.Fatalf("accepted; want %s", want)
			}
			if !strings.Contains(err.Error(), filepath.Base(f)+":"+want) {
				t.Errorf("error:\n  %v\nwant:\n  %s:%s", err, filepath.Base(f), want)
			}
		})
	}
}
