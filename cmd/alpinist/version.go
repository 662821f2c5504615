package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// version is set with -ldflags "-X main.version=..." by release builds;
// make sets commit and commitDate (go build's own VCS stamp, when it is
// not turned off, stands in).
var version, commit, commitDate = "", "", ""

func newVersionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print alpinist's version, commit and its date",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprintln(e.stdout, versionLine())
			return err
		},
	}
}

// versionLine is what version and --version print: the version, the
// commit it was built from and that commit's date (the build's own date
// would make the binary irreproducible), and the platform.
func versionLine() string {
	line := "alpinist " + versionString()
	if rev, date, modified := buildVCS(); rev != "" {
		line += " (commit " + rev
		if date != "" {
			line += " of " + date
		}
		if modified {
			line += ", with local changes"
		}
		line += ")"
	}
	return line + " " + runtime.GOOS + "/" + runtime.GOARCH + " " + runtime.Version()
}

// buildVCS is the commit the binary was built from, as make or go build
// records it.
func buildVCS() (rev, date string, modified bool) {
	if commit != "" {
		return strings.TrimSuffix(commit, "-dirty"), commitDate, strings.HasSuffix(commit, "-dirty")
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "", "", false
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			date = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	return rev, date, modified
}

// versionString is the release version, else devel-COMMIT.
func versionString() string {
	if version != "" {
		return version
	}
	v := "devel"
	if rev, _, _ := buildVCS(); len(rev) >= 12 {
		v += "-" + rev[:12]
	}
	return v
}
