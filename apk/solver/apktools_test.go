package solver

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alpinist/alpinist/apk"
)

// TestAPKToolsCases runs apk-tools' own solver tests (test/*.test of
// v2.14.4) that start from an empty installed database, and compares our
// output with their @EXPECT blocks. The cases run in apk's test mode (see
// Options.testMode), as apk-tools' apk-test binary does.
func TestAPKToolsCases(t *testing.T) {
	files, err := filepath.Glob("testdata/apk-tools/*.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 40 {
		t.Fatalf("found %d apk-tools cases, want at least 40", len(files))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".test")
		t.Run(name, func(t *testing.T) {
			c, err := readAPKTest(file)
			if err != nil {
				t.Fatal(err)
			}
			if c.skip != "" {
				t.Skip(c.skip)
			}
			got := runAPKTest(t, c)
			if got != c.expect {
				t.Errorf("%s: args %q\ngot:\n%s\nwant:\n%s", name, c.args, got, c.expect)
			}
		})
	}
}

// apkTest is one parsed test/*.test file.
type apkTest struct {
	args   []string
	repos  []testRepo
	world  []string
	force  bool
	skip   string
	expect string
}

type testRepo struct{ tag, file string }

func readAPKTest(file string) (*apkTest, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var block string
	var args, expect strings.Builder
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "@") {
			block = line
			continue
		}
		switch block {
		case "@ARGS":
			args.WriteString(line + "\n")
		case "@EXPECT":
			expect.WriteString(line + "\n")
		}
	}
	c := &apkTest{expect: expect.String()}
	if c.args, err = xargsSplit(args.String()); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	dir := filepath.Dir(file)
	applet := false
	for i := 0; i < len(c.args); i++ {
		a := c.args[i]
		if applet {
			if strings.HasPrefix(a, "-") {
				c.skip = "applet option " + a + " is not part of the solver"
			}
			c.world = append(c.world, a)
			continue
		}
		next := func() string {
			i++
			if i < len(c.args) {
				return c.args[i]
			}
			return ""
		}
		switch a {
		case "--test-repo":
			spec := next()
			if strings.HasPrefix(spec, "!") {
				c.skip = "cached non-repository packages (--test-repo !FILE) are not modelled"
				spec = spec[1:]
			}
			r := testRepo{file: spec}
			if tag, f, ok := strings.Cut(spec, ":"); ok {
				r = testRepo{tag: tag, file: f}
			}
			r.file = filepath.Join(dir, r.file)
			c.repos = append(c.repos, r)
		case "--test-world":
			c.world = append(c.world, strings.Fields(next())...)
		case "--test-instdb":
			c.skip = "installed database: the solver starts from an empty root"
			next()
		case "--force":
			c.force = true
		case "add":
			applet = true
		default:
			c.skip = "option " + a + " not supported"
		}
	}
	if !applet && c.skip == "" {
		c.skip = "not an add"
	}
	return c, nil
}

// xargsSplit splits like xargs: on blanks, honouring quotes.
func xargsSplit(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	in := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote = r
			in = true
		case r == ' ' || r == '\t' || r == '\n':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quote")
	}
	if in {
		out = append(out, cur.String())
	}
	return out, nil
}

func loadIndex(t testing.TB, file string) []*apk.Package {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pkgs, err := apk.ParseIndex(f)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return pkgs
}

func runAPKTest(t *testing.T, c *apkTest) string {
	var repos []Repository
	for _, r := range c.repos {
		repos = append(repos, Repository{Name: r.file, Tag: r.tag, Packages: loadIndex(t, r.file)})
	}
	s, err := New(repos, Options{ForceBrokenWorld: c.force, testMode: true})
	if err != nil {
		t.Fatal(err)
	}
	var world []apk.Dependency
	for _, w := range c.world {
		d, err := apk.ParseDependency(w)
		if err != nil {
			t.Fatalf("world %q: %v", w, err)
		}
		world = append(world, d)
	}
	return apkOutput(s.Solve(world))
}

// apkOutput renders a solution or failure as `apk add --simulate` prints
// it on an empty root.
func apkOutput(ins []Install, err error) string {
	var se *Error
	if errors.As(err, &se) {
		return se.Report()
	}
	if err != nil {
		return "unexpected error: " + err.Error() + "\n"
	}
	var b strings.Builder
	for i, in := range ins {
		fmt.Fprintf(&b, "(%d/%d) Installing %s\n", i+1, len(ins), in)
	}
	b.WriteString("OK: 0 MiB in 0 packages\n")
	return b.String()
}
