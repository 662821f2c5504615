package main

import (
	"archive/tar"
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

// Tree of the assemble row: 30,000 files, about 200 MB.
const (
	treeFiles = 30000
	treeLinks = 40 // symbolic links, beside the files
)

// genTree writes the same tree twice, deterministically: as the
// directory dir (for mke2fs -d) and as the tar file tarPath (for
// alpinist assemble). files regular files of mixed sizes (most under
// 8 KiB, one in 300 of 800 KiB; half random, half text, a few all
// zero), 100 a directory, three levels deep, and 40 symbolic links to
// them: for treeFiles, about 200 MB. It returns the bytes of file data.
func genTree(dir, tarPath string, files int) (int64, error) {
	f, err := os.Create(tarPath)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	rng := rand.New(rand.NewPCG(18, 30000))
	mtime := time.Unix(1700000000, 0)
	text := []byte("alpinist assembles a root file system into outputs, reproducibly.\n")
	buf := make([]byte, 1<<20)
	var total int64
	dirs := map[string]bool{}
	mkdir := func(d string) error {
		var todo []string
		for p := d; p != "." && !dirs[p]; p = filepath.Dir(p) {
			todo = append(todo, p)
		}
		slices.Reverse(todo)
		for _, p := range todo {
			dirs[p] = true
			if err := tw.WriteHeader(&tar.Header{Name: p + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}); err != nil {
				return err
			}
			if err := os.Mkdir(filepath.Join(dir, p), 0o755); err != nil {
				return err
			}
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	var names []string
	for i := range files {
		d := fmt.Sprintf("usr/d%d/e%02d/f%d", i/10000, i/1000%10, i/100%10)
		if err := mkdir(d); err != nil {
			return 0, err
		}
		size := rng.IntN(8 << 10)
		if i%300 == 0 {
			size = 800 << 10
		}
		data := buf[:size]
		switch {
		case i%97 == 0:
			clear(data)
		case i%2 == 0:
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
		default:
			for j := 0; j < size; j += len(text) {
				copy(data[j:], text)
			}
		}
		name := fmt.Sprintf("%s/file%05d", d, i)
		names = append(names, name)
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(size), ModTime: mtime}); err != nil {
			return 0, err
		}
		if _, err := tw.Write(data); err != nil {
			return 0, err
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return 0, err
		}
		total += int64(size)
	}
	if err := mkdir("usr/links"); err != nil {
		return 0, err
	}
	for i := range treeLinks {
		name := fmt.Sprintf("usr/links/l%02d", i)
		target := "../../" + names[rng.IntN(len(names))]
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777, ModTime: mtime}); err != nil {
			return 0, err
		}
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			return 0, err
		}
	}
	if err := tw.Close(); err != nil {
		return 0, err
	}
	if err := bw.Flush(); err != nil {
		return 0, err
	}
	return total, f.Close()
}

// mke2fs runs mke2fs -d as the reference.
func mke2fs(dir, img, size string) error {
	cmd := exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-d", dir, img, size)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mke2fs: %v\n%s", err, out)
	}
	return nil
}

// assembleVsMke2fs times alpinist assemble of the tree's tar to a 1 GiB
// ext4 image against mke2fs -d of the same tree to the same size, end
// to end, side by side (ours then mke2fs, runs times), and adds the row
// with the medians.
func assembleVsMke2fs(bin, work string, runs int) {
	dir, in := filepath.Join(work, "tree"), filepath.Join(work, "tree.tar")
	if _, err := genTree(dir, in, treeFiles); err != nil {
		fatal("the tree: %v", err)
	}
	out, img := filepath.Join(work, "assemble-out"), filepath.Join(work, "mke2fs.img")
	var ours, theirs []time.Duration
	for range runs {
		os.RemoveAll(out)
		d, _, _ := alp(bin, "assemble", in, "-o", out, "--arch", "x86_64", "--output", "ext4", "--disk-size", "1G")
		ours = append(ours, d)
		os.Remove(img)
		start := time.Now()
		if err := mke2fs(dir, img, "1G"); err != nil {
			fatal("%v", err)
		}
		theirs = append(theirs, time.Since(start))
		fmt.Fprintf(os.Stderr, "bench: assemble %s, mke2fs -d %s\n", ms(d), ms(theirs[len(theirs)-1]))
	}
	os.RemoveAll(out)
	os.Remove(img)
	slices.Sort(ours)
	slices.Sort(theirs)
	o, t := ours[len(ours)/2], theirs[len(theirs)/2]
	add("assemble --output ext4 / mke2fs -d (200 MB tar, 30,000 files)",
		fmt.Sprintf("%.2f× (%s against %s, median of %d)", float64(o)/float64(t), ms(o), ms(t), runs), "≤ 1.0×")
}
