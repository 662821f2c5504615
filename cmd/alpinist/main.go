// Command alpinist builds Alpine Linux systems without Docker and without
// root: it resolves and verifies Alpine packages, installs them inside a
// QEMU build VM of the target architecture, and writes root filesystems,
// OCI images and bootable disks.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// env is what a command may touch: its streams and its logger. Tests run
// the whole CLI in-process through run.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	verbose, quiet bool
	logFormat      string
	level          slog.Level
	log            *slog.Logger
}

// logTo points the logger at w (stderr, or a progress display that
// prints lines above its bars), keeping the level and format.
func (e *env) logTo(w io.Writer) {
	o := &slog.HandlerOptions{Level: e.level}
	if e.logFormat == "json" {
		e.log = slog.New(slog.NewJSONHandler(w, o))
		return
	}
	e.log = slog.New(slog.NewTextHandler(w, o))
}

// exitError carries a specific exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// run executes the CLI with args and returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRootCmd(e)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "alpinist:", err)
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "alpinist: interrupted: QEMU is stopped, temporary files are removed, and the outputs of an earlier run are left as they were")
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EFBIG), errors.Is(err, syscall.EDQUOT):
		fmt.Fprintln(stderr, "alpinist: the disk is full (or a file size or quota limit was reached): nothing half-written is left, and the outputs of an earlier run are left as they were")
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

func newRootCmd(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "alpinist",
		Short: "Build Alpine Linux systems without Docker and without root",
		Long: `alpinist builds Alpine Linux systems from a YAML spec: it resolves Alpine
packages with real apk semantics, verifies their signatures, installs them
inside a QEMU build VM of the target architecture (so install scripts and
triggers run natively), and writes root filesystem tarballs, OCI images and
bootable disk images, byte for byte reproducibly.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			level := slog.LevelInfo
			switch {
			case e.verbose && e.quiet:
				return errors.New("-v and -q: choose one")
			case e.verbose:
				level = slog.LevelDebug
			case e.quiet:
				level = slog.LevelWarn
			}
			e.level = level
			if e.logFormat != "text" && e.logFormat != "json" {
				return fmt.Errorf("--log-format %q: want text or json", e.logFormat)
			}
			e.logTo(e.stderr)
			return nil
		},
	}
	root.PersistentFlags().BoolVarP(&e.verbose, "verbose", "v", false, "show debug messages (and the build VM's console)")
	root.PersistentFlags().BoolVarP(&e.quiet, "quiet", "q", false, "show only warnings and errors (and what was written)")
	root.PersistentFlags().StringVar(&e.logFormat, "log-format", "text", "log as `text` or json (one object per line)")
	root.Version = versionLine() // --version
	root.SetVersionTemplate("{{.Version}}\n")
	root.AddCommand(
		newVersionCmd(e),
		newResolveCmd(e),
		newRepoCmd(e),
		newPkgCmd(e),
		newFetchCmd(e),
		newBuildCmd(e),
		newPushCmd(e),
		newAssembleCmd(e),
		newRunCmd(e),
		newValidateCmd(e),
		newCompareCmd(e),
		newCacheCmd(e),
		newFleetCmd(e),
		newDoctorCmd(e),
	)
	return root
}
