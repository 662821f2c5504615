package db

import (
	"archive/tar"
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// ScriptType is the kind of an install script, in apk's order
// (apk_script_types), which is also the order of a package's scripts in
// scripts.tar.
type ScriptType int

// The script types apk 2.14 knows.
const (
	ScriptPreInstall ScriptType = iota
	ScriptPostInstall
	ScriptPreDeinstall
	ScriptPostDeinstall
	ScriptPreUpgrade
	ScriptPostUpgrade
	ScriptTrigger
	NumScriptTypes = 7
)

var scriptTypeNames = [NumScriptTypes]string{
	"pre-install", "post-install", "pre-deinstall", "post-deinstall",
	"pre-upgrade", "post-upgrade", "trigger",
}

// String gives the type's name as in scripts.tar and .apk control files
// ("post-install"), or "ScriptType(N)" for an invalid type.
func (t ScriptType) String() string {
	if t >= 0 && t < NumScriptTypes {
		return scriptTypeNames[t]
	}
	return fmt.Sprintf("ScriptType(%d)", int(t))
}

// ParseScriptType returns the type named s ("post-install"), as
// apk_script_type.
func ParseScriptType(s string) (ScriptType, bool) {
	for i, n := range scriptTypeNames {
		if n == s {
			return ScriptType(i), true
		}
	}
	return 0, false
}

// Script is one entry of lib/apk/db/scripts.tar.
type Script struct {
	// Package is the entry name's NAME-VERSION part; apk finds the
	// package by Checksum alone.
	Package  string
	Checksum []byte // the package's checksum (C:)
	Type     ScriptType
	// MTime is the entry's modification time: apk uses the package's build
	// time, or its own build time (SOURCE_DATE_EPOCH or now) when the
	// package has none.
	MTime int64
	Data  []byte
}

// Name is the entry's name in scripts.tar:
// NAME-VERSION.CHECKSUM.TYPE, the checksum as in the installed database.
func (s *Script) Name() (string, error) {
	c, err := encodeChecksum(s.Checksum)
	if err != nil {
		return "", err
	}
	if s.Type < 0 || s.Type >= NumScriptTypes {
		return "", fmt.Errorf("invalid script type %d", int(s.Type))
	}
	return s.Package + "." + c + "." + s.Type.String(), nil
}

// MaxScriptSize bounds one script read from scripts.tar.
const MaxScriptSize = 16 << 20

// ReadScripts reads lib/apk/db/scripts.tar in archive order. Entries apk
// ignores are skipped as apk skips them: anything but a regular file, and
// names that are not NAME-VERSION.CHECKSUM.TYPE with a known type and a
// valid checksum.
func ReadScripts(r io.Reader) ([]Script, error) {
	tr := tar.NewReader(r)
	var scripts []Script
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return scripts, nil
		}
		if err != nil {
			return nil, fmt.Errorf("scripts.tar: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != '\x00' {
			continue
		}
		s, ok := parseScriptName(hdr.Name)
		if !ok {
			continue
		}
		if hdr.Size > MaxScriptSize {
			return nil, fmt.Errorf("scripts.tar: %s: %d bytes, more than %d", hdr.Name, hdr.Size, MaxScriptSize)
		}
		s.MTime = hdr.ModTime.Unix()
		s.Data = make([]byte, hdr.Size)
		if _, err := io.ReadFull(tr, s.Data); err != nil {
			return nil, fmt.Errorf("scripts.tar: %s: %w", hdr.Name, err)
		}
		scripts = append(scripts, s)
	}
}

// parseScriptName splits a name as apk_read_script_archive_entry does:
// the type after the last dot, the checksum after the dot before it.
func parseScriptName(name string) (Script, bool) {
	dot := strings.LastIndexByte(name, '.')
	if dot <= 0 {
		return Script{}, false
	}
	typ, ok := ParseScriptType(name[dot+1:])
	if !ok {
		return Script{}, false
	}
	csumDot := strings.LastIndexByte(name[:dot-1], '.')
	if csumDot < 0 {
		return Script{}, false
	}
	sum, err := decodeChecksum(name[csumDot+1 : dot])
	if err != nil {
		return Script{}, false
	}
	return Script{Package: name[:csumDot], Checksum: sum, Type: typ}, true
}

// WriteScripts writes scripts as lib/apk/db/scripts.tar, in the order
// given, with the tar headers of apk_tar_write_entry (GNU magic, mode 0755,
// owner 0:0 named root:root) and the two zero blocks that end it. apk
// truncates names longer than 99 bytes; WriteScripts refuses them.
func WriteScripts(w io.Writer, scripts []Script) error {
	bw := bufio.NewWriter(w)
	var pad [512]byte
	for i := range scripts {
		s := &scripts[i]
		name, err := s.Name()
		if err != nil {
			return fmt.Errorf("scripts.tar: %s: %w", s.Package, err)
		}
		hdr, err := scriptHeader(name, int64(len(s.Data)), s.MTime)
		if err != nil {
			return fmt.Errorf("scripts.tar: %s: %w", name, err)
		}
		bw.Write(hdr[:])
		bw.Write(s.Data)
		if n := len(s.Data) % 512; n != 0 {
			bw.Write(pad[:512-n])
		}
	}
	bw.Write(pad[:])
	bw.Write(pad[:])
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("scripts.tar: %w", err)
	}
	return nil
}

func scriptHeader(name string, size, mtime int64) (*[512]byte, error) {
	var h [512]byte
	if len(name) > 99 || strings.IndexByte(name, 0) >= 0 {
		return nil, fmt.Errorf("name longer than 99 bytes (apk would truncate it)")
	}
	if mtime < 0 || mtime >= 1<<36 {
		return nil, fmt.Errorf("mtime %d out of range", mtime)
	}
	copy(h[0:100], name)
	putOctal(h[100:108], 0o755, true) // mode
	putOctal(h[108:116], 0, true)     // uid
	putOctal(h[116:124], 0, true)     // gid
	putOctal(h[124:136], size, false) // size
	putOctal(h[136:148], mtime, false)
	h[156] = '0'
	copy(h[257:265], "ustar  \x00")
	copy(h[265:297], "root")
	copy(h[297:329], "root")
	copy(h[148:156], "        ")
	sum := int64(0)
	for _, c := range h {
		sum += int64(c)
	}
	putOctal(h[148:155], sum, true)
	return &h, nil
}

// putOctal is io_archive.c's put_octal: zero-padded octal filling the
// field, its last byte a NUL when nul is set.
func putOctal(f []byte, v int64, nul bool) {
	i := len(f) - 1
	if nul {
		f[i] = 0
		i--
	}
	for ; i >= 0; i-- {
		f[i] = byte('0' + v%8)
		v /= 8
	}
}

// ScriptsOf lists the scripts of pkgs in the order apk writes scripts.tar:
// pkgs in the order given, which for apk is the installation order, and each
// package's scripts in ScriptType order. The entries' MTime is the
// package's build time, or defaultMTime (SOURCE_DATE_EPOCH) for packages
// without one.
func ScriptsOf(pkgs []*Installed, defaultMTime int64) []Script {
	var out []Script
	for _, in := range pkgs {
		for t, data := range in.Scripts {
			if data == nil {
				continue
			}
			mtime := in.Package.BuildTime
			if mtime == 0 {
				mtime = defaultMTime
			}
			out = append(out, Script{
				Package:  in.Package.String(),
				Checksum: in.Package.Checksum,
				Type:     ScriptType(t),
				MTime:    mtime,
				Data:     data,
			})
		}
	}
	return out
}

// AttachScripts sets the Scripts of pkgs from scripts as apk does when it
// opens a database: by package checksum; scripts of packages not in pkgs
// are dropped, and a later script of the same type replaces an earlier.
func AttachScripts(pkgs []*Installed, scripts []Script) {
	byChecksum := make(map[string]*Installed, len(pkgs))
	for _, in := range pkgs {
		byChecksum[string(in.Package.Checksum)] = in
	}
	for _, s := range scripts {
		if in := byChecksum[string(s.Checksum)]; in != nil && s.Type >= 0 && s.Type < NumScriptTypes {
			in.Scripts[s.Type] = bytes.Clone(s.Data)
		}
	}
}
