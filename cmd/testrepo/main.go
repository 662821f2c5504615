// Command testrepo generates alpinist's synthetic, signed Alpine test
// repository (x86_64 and aarch64) from Debian packages. `make testrepo`
// runs it; see docs/testrepo.md.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/alpinist/alpinist/internal/testkit/testrepo"
)

func main() {
	out := flag.String("o", "", "output directory (required)")
	arches := flag.String("arch", "", "comma-separated Alpine architectures (default: every arch the test repository is made for)")
	force := flag.Bool("force", false, "rebuild even when the output is up to date")
	debs := flag.String("debs", "", "Debian package cache (default DIR/debs)")
	verbose := flag.Bool("v", false, "log every step")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: testrepo -o DIR [-arch x86_64,aarch64] [-force] [-v]\n\n"+
			"Generates the signed synthetic Alpine repositories alpinist's tests use:\n"+
			"DIR/keys/, DIR/private/, DIR/main/ARCH/{APKINDEX.tar.gz,*.apk}, DIR/README.md.\n"+
			"Debian packages are downloaded with apt-get download into the cache.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := testrepo.Generate(ctx, testrepo.Options{
		Dir: *out, Arches: archList(*arches), DebCache: *debs,
		Fingerprint: fingerprint(), Force: *force, Log: log,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "testrepo:", err)
		os.Exit(1)
	}
	for _, r := range res {
		state := "generated"
		if r.UpToDate {
			state = "up to date"
		}
		fmt.Printf("%s: %d packages, %s (%s)\n", r.Arch, len(r.Packages), state, r.Elapsed.Round(1e6))
	}
}

// fingerprint identifies this generator build: the hash of its executable.
func fingerprint() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	f, err := os.Open(exe)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// archList splits the -arch flag ("" is every arch).
func archList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
