package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/alpinist/alpinist/repro"
)

func newCompareCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "compare A B",
		Short: "Compare two builds' outputs, and say where they differ",
		Long: `compare checks that two builds reproduce each other: A and B are two
output directories (or two output files). Every file but the build logs
is compared by sha256; for each that differs, compare says where:

    a tarball (rootfs .tar, .tar.gz, .tar.zst, WSL, LXC, docker-archive)
                      the first entry whose name, header or content differs
    a qcow2 image     the first differing bytes of its virtual disk
    any other file    the first differing byte range (and 4 KiB block)

It exits 0 when the outputs are the same, 1 when they differ.`,
		Example: `  alpinist build demo.yaml -o out1 && alpinist build demo.yaml -o out2
  alpinist compare out1 out2`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, b := args[0], args[1]
			sa, err := os.Stat(a)
			if err != nil {
				return err
			}
			sb, err := os.Stat(b)
			if err != nil {
				return err
			}
			if !sa.IsDir() || !sb.IsDir() {
				if sa.IsDir() != sb.IsDir() {
					return fmt.Errorf("%s and %s: give two directories or two files", a, b)
				}
				d, err := repro.Files(a, b)
				if err != nil {
					return err
				}
				if d == "" {
					fmt.Fprintf(e.stdout, "%s and %s are the same\n", a, b)
					return nil
				}
				fmt.Fprintf(e.stdout, "%s: %s\n", b, d)
				return &exitError{code: 1, err: fmt.Errorf("%s and %s differ", a, b)}
			}
			diffs, same, err := repro.Compare(a, b)
			if err != nil {
				return err
			}
			for _, d := range diffs {
				fmt.Fprintln(e.stdout, d)
			}
			if len(diffs) > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d of %d outputs differ", len(diffs), len(diffs)+same)}
			}
			fmt.Fprintf(e.stdout, "%d outputs, the same in %s and %s\n", same, a, b)
			return nil
		},
	}
}
