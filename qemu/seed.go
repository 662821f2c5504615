package qemu

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	"go.yaml.in/yaml/v3"
)

// NoCloudSeed writes dir/seed.iso, a NoCloud seed for cloud-init and
// Alpine's tiny-cloud: an ISO 9660 volume labeled "cidata" (Rock Ridge
// and Joliet names) holding user-data (userData as it is) and meta-data
// (metaData when not empty, else one made here: an instance-id from the
// user data's hash, and the hostname a cloud-config user data names, as
// cloud-init would set it). It returns the image's path.
func NoCloudSeed(dir string, userData, metaData []byte) (string, error) {
	if len(metaData) == 0 {
		metaData = seedMetaData(userData)
	}
	p := filepath.Join(dir, "seed.iso")
	if err := WriteISO(p, "cidata", []ISOFile{{"meta-data", metaData}, {"user-data", userData}}); err != nil {
		return "", fmt.Errorf("the NoCloud seed: %w", err)
	}
	return p, nil
}

// ISOFile is a file at the root of an ISO 9660 image.
type ISOFile struct {
	Name string
	Data []byte
}

// WriteISO writes p, an ISO 9660 volume labeled label (Rock Ridge and
// Joliet names) holding files at its root, a whole MiB: busybox's blkid
// (which resolves mount's LABEL=) skips a device smaller than 64 KiB,
// and a disk is whole sectors.
func WriteISO(p, label string, files []ISOFile) error {
	work, err := os.MkdirTemp(filepath.Dir(p), ".iso-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fs, err := iso9660.Create(file.New(f, false), 0, 0, 2048, work)
	if err != nil {
		return err
	}
	for _, fl := range files {
		w, err := fs.OpenFile("/"+fl.Name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("%s: %w", fl.Name, err)
		}
		if _, err := w.Write(fl.Data); err != nil {
			return fmt.Errorf("%s: %w", fl.Name, err)
		}
	}
	if err := fs.Finalize(iso9660.FinalizeOptions{RockRidge: true, Joliet: true, VolumeIdentifier: label}); err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	return f.Truncate(max(st.Size()+1<<20-1, 1<<20) &^ (1<<20 - 1))
}

// seedMetaData is the meta-data of a seed given only user data.
func seedMetaData(userData []byte) []byte {
	sum := sha256.Sum256(userData)
	md := fmt.Sprintf("instance-id: iid-alpinist-%x\n", sum[:8])
	var cfg struct {
		Hostname string `yaml:"hostname"`
		FQDN     string `yaml:"fqdn"`
	}
	first, _, _ := strings.Cut(string(userData), "\n")
	if strings.HasPrefix(first, "#cloud-config") || strings.HasPrefix(first, "#alpine-config") {
		if yaml.Unmarshal(userData, &cfg) == nil {
			host := cfg.FQDN
			if host == "" {
				host = cfg.Hostname
			}
			if host != "" && !strings.ContainsAny(host, "\n\"'") {
				md += fmt.Sprintf("hostname: %s\nlocal-hostname: %s\n", host, host)
			}
		}
	}
	return []byte(md)
}
