package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/alpinist/alpinist/apk/lock"
	"github.com/alpinist/alpinist/builder"
)

type resolveFlags struct {
	arch     []string
	lockOut  string
	lockedIn string
	jsonOut  bool
	cacheDir string
}

func newResolveCmd(e *env) *cobra.Command {
	var f resolveFlags
	cmd := &cobra.Command{
		Use:   "resolve SPEC",
		Short: "Resolve a spec's packages and print them in install order",
		Long: `resolve reads the repositories' signed indexes (never the package files),
solves the spec's package list with apk-tools' semantics, and prints one line
per package in install order:

    NAME VERSION REPOSITORY

for each architecture of the spec (or those given with --arch). With --lock
it also writes the lock file; with --locked it checks a lock file against
the spec and the repositories and prints the locked packages instead of
solving again. Unsatisfiable package lists are explained the way apk does.`,
		Example: `  alpinist resolve testdata/specs/demo.yaml --arch x86_64
  alpinist resolve web.yaml --lock web.lock
  alpinist resolve web.yaml --locked web.lock --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runResolve(cmd, e, args[0], f)
		},
	}
	cmd.Flags().StringSliceVar(&f.arch, "arch", nil, "architectures to resolve (default: the spec's)")
	cmd.Flags().StringVar(&f.lockOut, "lock", "", "write the lock file to `FILE`")
	cmd.Flags().StringVar(&f.lockedIn, "locked", "", "use the packages of lock `FILE` instead of solving")
	cmd.Flags().BoolVar(&f.jsonOut, "json", false, "print JSON instead of lines")
	cmd.Flags().StringVar(&f.cacheDir, "cache", "", "package cache `DIR` (default $ALPINIST_CACHE or ~/.cache/alpinist)")
	return cmd
}

// resolved is one arch's result.
type resolved struct {
	Arch     string            `json:"arch"`
	Packages []resolvedPackage `json:"packages"`
}

type resolvedPackage struct {
	Name       string `json:"name"`
	Version    string `json:"version"`
	Repository string `json:"repository"`
	Checksum   string `json:"checksum"`
	Size       int64  `json:"size"`
}

func runResolve(cmd *cobra.Command, e *env, specPath string, f resolveFlags) error {
	sess, err := builder.Open(specPath, builder.OpenOptions{Arches: f.arch, LockPath: f.lockedIn, CacheDir: f.cacheDir, Log: e.log})
	if err != nil {
		return err
	}
	out := &lock.File{Name: sess.Spec.Name}
	var results []resolved
	for _, arch := range sess.Arches {
		r, err := sess.Resolve(cmd.Context(), arch)
		if err != nil {
			return err
		}
		out.Set(r.Entry)
		res := resolved{Arch: arch}
		for _, p := range r.Entry.Packages {
			res.Packages = append(res.Packages, resolvedPackage{Name: p.Name, Version: p.Version, Repository: p.Repository, Checksum: p.Checksum, Size: p.Size})
		}
		results = append(results, res)
	}
	if f.lockOut != "" {
		if err := lock.Write(f.lockOut, out); err != nil {
			return err
		}
		e.log.Info("wrote lock file", "path", f.lockOut)
	}
	if f.jsonOut {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	for _, r := range results {
		if len(results) > 1 {
			fmt.Fprintf(e.stdout, "# %s\n", r.Arch)
		}
		for _, p := range r.Packages {
			if _, err := fmt.Fprintf(e.stdout, "%s %s %s\n", p.Name, p.Version, p.Repository); err != nil {
				return err
			}
		}
	}
	return nil
}
