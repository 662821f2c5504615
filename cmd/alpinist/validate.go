package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/alpinist/alpinist/spec"
)

func newValidateCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "validate SPEC...",
		Short: "Check specs without building",
		Long: `validate reads each spec strictly, as build would, and reports every problem
with FILE:LINE:COLUMN: an unknown field, a wrong type, a bad value, a path
that does not exist. It needs no repository and starts no VM.`,
		Example: `  alpinist validate testdata/specs/*.yaml`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var errs []error
			for _, p := range args {
				s, err := spec.Load(p)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				for _, w := range s.Warnings {
					fmt.Fprintf(e.stderr, "warning: %s\n", w)
				}
				fmt.Fprintf(e.stdout, "%s: ok (%s: %s, %d packages)\n", p, s.Name, strings.Join(s.Arch, ", "), len(s.Packages))
			}
			if len(errs) > 0 {
				return &exitError{code: 1, err: errors.Join(errs...)}
			}
			return nil
		},
	}
}
