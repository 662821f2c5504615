package testrepo

import (
	"context"
	"fmt"
	"log/slog"
	"os"
)

// BuildPackages builds every package of one Alpine architecture in
// memory (file contents stay on disk under work, which must outlive the
// returned trees), fetching Debian packages through d.
func BuildPackages(ctx context.Context, arch string, d *Debian, work string, log *slog.Logger) ([]*Pkg, error) {
	debArch, err := DebArch(arch)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, fmt.Errorf("testrepo: %w", err)
	}
	b := &builder{arch: arch, debArch: debArch, debian: d, work: work, log: log}
	var all []*Pkg
	for _, pb := range packageBuilders {
		log.Info("building", "arch", arch, "packages", pb.name)
		pkgs, err := pb.build(ctx, b)
		if err != nil {
			return nil, fmt.Errorf("testrepo: %s: %s: %w", arch, pb.name, err)
		}
		all = append(all, pkgs...)
	}
	if err := checkPkgs(all); err != nil {
		return nil, err
	}
	return all, nil
}
