package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/alpinist/alpinist/apk"
	"github.com/alpinist/alpinist/apk/apkfile"
	"github.com/alpinist/alpinist/apk/index"
	"github.com/alpinist/alpinist/apk/sign"
	"github.com/alpinist/alpinist/arch"
	"github.com/alpinist/alpinist/internal/epoch"
)

func newRepoCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repo",
		Short: "Make signing keys and signed repository indexes",
	}
	cmd.AddCommand(newRepoKeygenCmd(e), newRepoIndexCmd(e))
	return cmd
}

func newRepoKeygenCmd(e *env) *cobra.Command {
	var out, name string
	var bits int
	cmd := &cobra.Command{
		Use:   "keygen --out DIR",
		Short: "Generate an RSA signing key pair",
		Long: `keygen writes a new RSA key pair as abuild-keygen does: DIR/NAME.rsa (the
private key, PKCS#8 PEM, mode 0600) and DIR/NAME.rsa.pub (the public key,
PKIX PEM). Sign with --key DIR/NAME.rsa; trust the public key by putting it
in a keys directory (apk's /etc/apk/keys, or keys: in a spec). An existing
private key is never overwritten.`,
		Example: `  alpinist repo keygen --out keys --name me@example.org-1`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("--out DIR is required")
			}
			k, err := sign.Generate(name, bits)
			if err != nil {
				return err
			}
			priv, pub, err := k.Save(out)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "private key: %s\npublic key:  %s\n", priv, pub)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the key pair into `DIR` (required)")
	cmd.Flags().StringVar(&name, "name", "alpinist", "key `NAME` (files NAME.rsa and NAME.rsa.pub)")
	cmd.Flags().IntVar(&bits, "bits", sign.DefaultBits, "RSA key size")
	return cmd
}

type repoIndexFlags struct {
	key, sigType, desc, rewriteArch, output string
	keys                                    []string
}

func newRepoIndexCmd(e *env) *cobra.Command {
	var f repoIndexFlags
	cmd := &cobra.Command{
		Use:   "index DIR --key KEY",
		Short: "Write a signed APKINDEX.tar.gz for the packages in a directory",
		Long: `index reads every *.apk in DIR (a repository's arch directory, like
main/x86_64), checks each one's hashes (and signature, with --keys), and
writes DIR/APKINDEX.tar.gz signed with KEY, as apk index and abuild-sign do.

apk fetches a package from REPO/ARCH/NAME-VERSION.apk using the arch the
index lists, so noarch packages are listed with DIR's arch: the directory's
name when it is a known architecture, or --rewrite-arch. Times come from
SOURCE_DATE_EPOCH, else the newest package's build date, so the same
packages give the same index.`,
		Example: `  alpinist repo index repo/main/x86_64 --key keys/me.rsa --description "my repo"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRepoIndex(e, args[0], f)
		},
	}
	cmd.Flags().StringVar(&f.key, "key", "", "private signing key `FILE` (NAME.rsa; required)")
	cmd.Flags().StringVar(&f.sigType, "sig-type", "RSA", "signature type: RSA (SHA-1, abuild's default) or RSA256")
	cmd.Flags().StringVar(&f.desc, "description", "", "the index's DESCRIPTION")
	cmd.Flags().StringVar(&f.rewriteArch, "rewrite-arch", "", "list every package with `ARCH` (default: noarch packages get DIR's arch)")
	cmd.Flags().StringSliceVar(&f.keys, "keys", nil, "verify each package's signature against these key `DIRS/FILES`")
	cmd.Flags().StringVarP(&f.output, "output", "o", "", "index `FILE` (default DIR/APKINDEX.tar.gz)")
	return cmd
}

func runRepoIndex(e *env, dir string, f repoIndexFlags) error {
	if f.key == "" {
		return fmt.Errorf("--key FILE is required (make one with: alpinist repo keygen --out DIR)")
	}
	key, err := sign.LoadKey(f.key)
	if err != nil {
		return err
	}
	alg, err := sign.ParseAlgorithm(f.sigType)
	if err != nil {
		return err
	}
	opts := apkfile.ReadOptions{AllowUntrusted: true}
	if len(f.keys) > 0 {
		if opts.Keys, err = sign.LoadKeyring(f.keys...); err != nil {
			return err
		}
		opts.AllowUntrusted = false
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.apk"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("%s: no *.apk files", dir)
	}
	slices.Sort(files)
	dirArch := filepath.Base(filepath.Clean(dir))
	if _, ok := arch.Lookup(dirArch); !ok {
		dirArch = ""
	}
	var pkgs []*apk.Package
	seen := map[string]string{}
	var newest int64
	for _, file := range files {
		p, err := readPackageFile(file, opts)
		if err != nil {
			return err
		}
		if want := p.Filename(); filepath.Base(file) != want {
			return fmt.Errorf("%s: holds %s, so it must be named %s (apk fetches it by that name)", file, p, want)
		}
		if prev, dup := seen[p.String()]; dup {
			return fmt.Errorf("%s and %s are both %s", prev, file, p)
		}
		seen[p.String()] = file
		switch {
		case f.rewriteArch != "":
			p.Arch = f.rewriteArch
		case p.Arch == "noarch" && dirArch != "":
			p.Arch = dirArch
		case p.Arch == "noarch":
			return fmt.Errorf("%s: noarch package in %s, which is not named after an architecture: give --rewrite-arch", file, dir)
		}
		newest = max(newest, p.BuildTime)
		pkgs = append(pkgs, p)
	}
	mtime, ok, err := epoch.FromEnv()
	if err != nil {
		return err
	}
	if !ok {
		mtime = time.Unix(newest, 0)
	}
	index.Sort(pkgs)
	out := f.output
	if out == "" {
		out = filepath.Join(dir, index.FileName)
	}
	if err := index.WriteFile(out, f.desc, pkgs, index.WriteOptions{Key: key, Alg: alg, Mtime: mtime}); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: %d packages, signed with %s\n", out, len(pkgs), key.Name)
	return nil
}

// readPackageFile reads and verifies one .apk, naming it in errors.
func readPackageFile(file string, opts apkfile.ReadOptions) (*apk.Package, error) {
	fh, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	p, err := apkfile.Read(fh, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return p.Info, nil
}

// splitList splits flag values that may hold several space-separated items.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		out = append(out, strings.Fields(v)...)
	}
	return out
}
