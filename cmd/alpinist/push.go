package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/alpinist/alpinist/assembler/oci"
)

func newPushCmd(e *env) *cobra.Command {
	var insecure bool
	cmd := &cobra.Command{
		Use:   "push OCI_DIR REF",
		Short: "Push an OCI image layout to a registry",
		Long: `push pushes the image of an OCI image layout written by alpinist build
(NAME.oci: one image, or a multi-arch index for several arches) to the
registry reference REF, then its SBOMs as OCI 1.1 referrers, and prints
the digest pushed.

Credentials come from the files docker login and podman login write:
~/.docker/config.json (or $DOCKER_CONFIG/config.json), else
$REGISTRY_AUTH_FILE, else containers/auth.json under $XDG_RUNTIME_DIR or
~/.config; credential helpers named there are used. Without any, the
push is anonymous.

TLS is verified. --insecure allows plain HTTP, and only for a registry
on this machine (localhost, 127.0.0.0/8, ::1).`,
		Example: `  alpinist push out/web.oci registry.example.org/team/web:1.0
  alpinist push out/web.oci localhost:5000/web:dev --insecure`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return push(cmd.Context(), e, args[0], args[1], insecure)
		},
	}
	cmd.Flags().BoolVar(&insecure, "insecure", false, "plain HTTP, for a registry on localhost only")
	return cmd
}

func push(ctx context.Context, e *env, dir, ref string, insecure bool) error {
	bar := newByteBar(e.progress(), "push", 0)
	var last int64
	d, err := oci.Push(ctx, dir, ref, oci.PushOptions{Insecure: insecure, Progress: func(done, total int64) {
		if bar.bar != nil {
			bar.bar.SetTotal(total, false)
		}
		bar.add(done - last)
		last = done
	}})
	bar.done()
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "pushed: %s@%s\n", ref, d)
	return nil
}
