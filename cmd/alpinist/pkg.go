package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/apkfile"
	"github.com/alpinist/alpinist/apk/sign"
	apkversion "github.com/alpinist/alpinist/apk/version"
	"github.com/alpinist/alpinist/internal/epoch"
)

func newPkgCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pkg",
		Short: "Build and inspect APK v2 packages",
	}
	cmd.AddCommand(newPkgBuildCmd(e), newPkgInspectCmd(e))
	return cmd
}

type pkgBuildFlags struct {
	meta                                   apk.Package
	key, out, scripts, sigType             string
	depends, provides, installIf, replaces []string
	triggers                               []string
	providerPriority                       int
	buildDate                              int64
}

func newPkgBuildCmd(e *env) *cobra.Command {
	var f pkgBuildFlags
	cmd := &cobra.Command{
		Use:   "build DIR --name N --version V --arch A --key KEY -o OUTDIR",
		Short: "Build a signed .apk from a directory",
		Long: `build packs the tree under DIR into OUTDIR/N-V.apk, signed with KEY, in the
layout abuild makes (signature, control and data gzip streams; per-file
SHA-1 and the data stream's SHA-256 recorded), so apk-tools installs it.

Every file is owned by root, as abuild under fakeroot packs it; permission
bits, symlinks, hard links, device nodes and FIFOs are kept. Install scripts
come from --scripts DIR: files named pre-install, post-install, pre-upgrade,
post-upgrade, pre-deinstall, post-deinstall and trigger (optionally with a
leading dot or "N."); a trigger script needs --triggers. All times are the
build date: --build-date, else SOURCE_DATE_EPOCH, else the newest mtime in
DIR, so the same tree gives the same bytes.`,
		Example: `  alpinist pkg build ./root --name hello --version 1.0-r0 --arch x86_64 \
      --key keys/me.rsa -o repo/main/x86_64 --depends "busybox so:libc.musl-x86_64.so.1"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPkgBuild(cmd, e, args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.meta.Name, "name", "", "package name (required)")
	fl.StringVar(&f.meta.Version, "version", "", "package version, e.g. 1.2.3-r0 (required)")
	fl.StringVar(&f.meta.Arch, "arch", "", "architecture, e.g. x86_64, aarch64 or noarch (required)")
	fl.StringVar(&f.key, "key", "", "private signing key `FILE` (required)")
	fl.StringVarP(&f.out, "output", "o", "", "output `DIR` (required)")
	fl.StringVar(&f.meta.Description, "description", "", "one-line description")
	fl.StringVar(&f.meta.URL, "url", "", "project URL")
	fl.StringVar(&f.meta.License, "license", "", "SPDX license expression")
	fl.StringVar(&f.meta.Origin, "origin", "", "origin (source package) name (default: the name)")
	fl.StringVar(&f.meta.Maintainer, "maintainer", "", "maintainer")
	fl.StringVar(&f.meta.Commit, "commit", "", "source commit")
	fl.StringSliceVar(&f.depends, "depends", nil, "dependencies (repeatable, space or comma separated)")
	fl.StringSliceVar(&f.provides, "provides", nil, "provided names, e.g. cmd:hello=1.0-r0")
	fl.StringSliceVar(&f.installIf, "install-if", nil, "install_if condition")
	fl.StringSliceVar(&f.replaces, "replaces", nil, "packages whose files this one may overwrite")
	fl.IntVar(&f.meta.ReplacesPriority, "replaces-priority", 0, "replaces_priority")
	fl.IntVar(&f.providerPriority, "provider-priority", -1, "provider_priority (unset when negative)")
	fl.StringSliceVar(&f.triggers, "triggers", nil, "directories (globs) whose changes run the trigger script")
	fl.StringVar(&f.scripts, "scripts", "", "`DIR` holding install scripts")
	fl.Int64Var(&f.buildDate, "build-date", -1, "build date in Unix seconds")
	fl.StringVar(&f.sigType, "sig-type", "RSA", "signature type: RSA (SHA-1) or RSA256")
	return cmd
}

func runPkgBuild(cmd *cobra.Command, e *env, dir string, f pkgBuildFlags) error {
	m := f.meta
	var missing []string
	for _, r := range [][2]string{{"--name", m.Name}, {"--version", m.Version}, {"--arch", m.Arch}, {"--key", f.key}, {"-o", f.out}} {
		if r[1] == "" {
			missing = append(missing, r[0])
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	if !apkversion.Valid(m.Version) {
		return fmt.Errorf("--version %q is not a valid apk version (like 1.2.3-r0)", m.Version)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("%s: not a directory", dir)
	}
	if m.Origin == "" {
		m.Origin = m.Name
	}
	var err error
	for _, d := range []struct {
		flag string
		vals []string
		dst  *[]apk.Dependency
	}{{"--depends", f.depends, &m.Depends}, {"--provides", f.provides, &m.Provides}, {"--install-if", f.installIf, &m.InstallIf}, {"--replaces", f.replaces, &m.Replaces}} {
		if *d.dst, err = apk.ParseDependencies(strings.Join(splitList(d.vals), " ")); err != nil {
			return fmt.Errorf("%s: %w", d.flag, err)
		}
	}
	m.Triggers = splitList(f.triggers)
	if f.providerPriority >= 0 {
		m.ProviderPriority, m.HasProviderPriority = f.providerPriority, true
	}
	key, err := sign.LoadKey(f.key)
	if err != nil {
		return err
	}
	alg, err := sign.ParseAlgorithm(f.sigType)
	if err != nil {
		return err
	}
	scripts, err := apkfile.ReadScripts(f.scripts, m.Name)
	if err != nil {
		return fmt.Errorf("--scripts: %w", err)
	}
	ents, err := apkfile.FromDir(dir)
	if err != nil {
		return err
	}
	switch {
	case f.buildDate >= 0:
		m.BuildTime = f.buildDate
	default:
		t, ok, err := epoch.FromEnv()
		if err != nil {
			return err
		}
		if ok {
			m.BuildTime = t.Unix()
		} else if m.BuildTime, err = apkfile.NewestMtime(dir); err != nil {
			return err
		}
	}
	out, path, err := apkfile.WriteFile(f.out, &m, scripts, ents, apkfile.WriteOptions{Key: key, Alg: alg})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: %d entries, %d bytes, C:%s\n", path, len(ents), out.Size, apk.EncodeChecksum(out.Checksum))
	return nil
}

func newPkgInspectCmd(e *env) *cobra.Command {
	var keys []string
	var untrusted, list bool
	cmd := &cobra.Command{
		Use:   "inspect FILE.apk",
		Short: "Verify a package and print its metadata",
		Long: `inspect reads a whole package, verifies its signature against the trusted
keys (--keys, default /etc/apk/keys), the data stream's SHA-256 and every
file's SHA-1, and prints its metadata, scripts and (with --list) its files.
Any failure exits non-zero with the reason.`,
		Example: `  alpinist pkg inspect repo/main/x86_64/hello-1.0-r0.apk --keys keys/`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPkgInspect(e, args[0], keys, untrusted, list)
		},
	}
	cmd.Flags().StringSliceVar(&keys, "keys", nil, "trusted key `DIRS/FILES` (default /etc/apk/keys)")
	cmd.Flags().BoolVar(&untrusted, "allow-untrusted", false, "print an unverifiable package (hashes are still checked)")
	cmd.Flags().BoolVar(&list, "list", false, "list the files")
	return cmd
}

func runPkgInspect(e *env, file string, keyPaths []string, untrusted, list bool) error {
	opts := apkfile.ReadOptions{AllowUntrusted: untrusted}
	if len(keyPaths) == 0 {
		if _, err := os.Stat("/etc/apk/keys"); err == nil {
			keyPaths = []string{"/etc/apk/keys"}
		} else if !untrusted {
			return errors.New("no trusted keys: give --keys DIR (or --allow-untrusted)")
		}
	}
	if len(keyPaths) > 0 {
		kr, err := sign.LoadKeyring(keyPaths...)
		if err != nil {
			return err
		}
		opts.Keys = kr
	}
	var files []string
	if list {
		opts.Entry = func(h *tar.Header, r io.Reader) error {
			s := fmt.Sprintf("%s %4o %d:%d %s", typeName(h.Typeflag), h.Mode, h.Uid, h.Gid, h.Name)
			switch h.Typeflag {
			case tar.TypeSymlink:
				s += " -> " + h.Linkname
			case tar.TypeLink:
				s += " => " + h.Linkname
			case tar.TypeReg:
				s += " (" + strconv.FormatInt(h.Size, 10) + " bytes)"
			}
			files = append(files, s)
			return nil
		}
	}
	fh, err := os.Open(file)
	if err != nil {
		return err
	}
	defer fh.Close()
	p, err := apkfile.Read(fh, opts)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	w := e.stdout
	if err := apk.WriteIndexEntry(w, p.Info); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if len(p.Info.Replaces) > 0 {
		fmt.Fprintf(w, "replaces: %s\n", apk.FormatDependencies(p.Info.Replaces))
	}
	if p.Info.ReplacesPriority != 0 {
		fmt.Fprintf(w, "replaces_priority: %d\n", p.Info.ReplacesPriority)
	}
	if len(p.Info.Triggers) > 0 {
		fmt.Fprintf(w, "triggers: %s\n", strings.Join(p.Info.Triggers, " "))
	}
	fmt.Fprintf(w, "datahash: %s\n", p.Info.DataHash)
	for _, s := range apkfile.ScriptNames {
		if data, ok := p.Scripts[s]; ok {
			fmt.Fprintf(w, "script: %s (%d bytes)\n", s, len(data))
		}
	}
	fmt.Fprintf(w, "files: %d\n", p.Files)
	if p.Signer != nil {
		fmt.Fprintf(w, "signature: %s by %s: OK\n", p.Signer.Alg, p.Signer.KeyName)
	} else {
		var names []string
		for _, s := range p.Signatures {
			names = append(names, s.Alg.String()+" by "+s.KeyName)
		}
		fmt.Fprintf(w, "signature: UNTRUSTED (%s)\n", strings.Join(names, ", "))
	}
	for _, f := range files {
		fmt.Fprintln(w, f)
	}
	return nil
}

func typeName(t byte) string {
	switch t {
	case tar.TypeReg:
		return "f"
	case tar.TypeDir:
		return "d"
	case tar.TypeSymlink:
		return "l"
	case tar.TypeLink:
		return "h"
	case tar.TypeChar:
		return "c"
	case tar.TypeBlock:
		return "b"
	case tar.TypeFifo:
		return "p"
	}
	return "?"
}
