package pkgdisk

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/alpinist/alpinist/apk/apkfile"
	"github.com/alpinist/alpinist/apk/sign"
	"github.com/alpinist/alpinist/internal/counting"
)

// A prepared package is a package the host has read and verified
// (signature, data hash, every file's SHA-1) and decompressed: two
// entries, its control tar (NAME-VERSION.control) and its data tar
// (N.data, N its index in the manifest). The build VM's installer takes
// them as they are, with nothing to inflate or hash under emulation, and
// knows where on the disk each file's bytes are (Reader.NextPrepared),
// so that its export can point at them instead of copying them out.

// ControlName and DataName are a prepared package's entries.
func (p Package) ControlName() string { return pkgDir + p.Name + "-" + p.Version + ".control" }

// DataName is the data tar's entry: short, so that its header is one
// block whatever the package's name (see AddPrepared).
func DataName(i int) string { return pkgDir + strconv.Itoa(i) + ".data" }

// maxPrepared is the largest data tar a one-block ustar header can size.
const maxPrepared = 1<<33 - 1

// AddPrepared writes the next package prepared: its control tar, and its
// data tar as fill writes it. The disk must be written to an
// io.WriteSeeker (a file): the data tar's size is known only once it is
// written, so its header is written after it, in the block left for it.
func (w *Writer) AddPrepared(control []byte, fill func(io.Writer) error) error {
	if !w.m.Prepared {
		return errors.New("pkgdisk: prepared packages only when the manifest says so")
	}
	ws, ok := w.w.(io.WriteSeeker)
	if !ok {
		return errors.New("pkgdisk: prepared packages need a disk that can seek")
	}
	if w.next >= len(w.m.Packages) {
		return errors.New("pkgdisk: more packages than the manifest lists")
	}
	if err := w.packages(); err != nil {
		return err
	}
	i, p := w.next, w.m.Packages[w.next]
	w.next++
	if err := w.file(p.ControlName(), int64(len(control)), bytes.NewReader(control)); err != nil {
		return err
	}
	// The previous entry's padding is written by Flush.
	if err := w.tw.Flush(); err != nil {
		return err
	}
	at, err := ws.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if _, err := ws.Write(make([]byte, blockSize)); err != nil {
		return err
	}
	cw := &counting.Writer{W: ws}
	if err := fill(cw); err != nil {
		return fmt.Errorf("pkgdisk: %s-%s: %w", p.Name, p.Version, err)
	}
	if cw.N > maxPrepared {
		return fmt.Errorf("pkgdisk: %s-%s: a data tar of %d bytes is too large", p.Name, p.Version, cw.N)
	}
	if pad := (blockSize - cw.N%blockSize) % blockSize; pad > 0 {
		if _, err := ws.Write(make([]byte, pad)); err != nil {
			return err
		}
	}
	var hb bytes.Buffer
	if err := tar.NewWriter(&hb).WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: DataName(i), Mode: 0o644, Size: cw.N,
		ModTime: w.mtime, Format: tar.FormatUSTAR}); err != nil {
		return err
	}
	if hb.Len() != blockSize {
		return fmt.Errorf("pkgdisk: %s: a header of %d bytes", DataName(i), hb.Len())
	}
	end, err := ws.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if _, err := ws.Seek(at, io.SeekStart); err != nil {
		return err
	}
	if _, err := ws.Write(hb.Bytes()); err != nil {
		return err
	}
	_, err = ws.Seek(end, io.SeekStart)
	return err
}

const blockSize = 512

// NextPrepared returns the next prepared package: its control tar, a
// reader of its data tar, and where on the disk the data tar begins
// (the offset of the reader given to NewReader), or io.EOF after the
// last one.
func (r *Reader) NextPrepared() (Package, []byte, io.Reader, int64, error) {
	if !r.Manifest.Prepared {
		return Package{}, nil, nil, 0, errors.New("pkgdisk: the packages are not prepared")
	}
	if r.next >= len(r.Manifest.Packages) {
		return Package{}, nil, nil, 0, io.EOF
	}
	i, p := r.next, r.Manifest.Packages[r.next]
	r.next++
	h, err := r.tr.Next()
	if err == nil && h.Name != p.ControlName() {
		err = fmt.Errorf("expected %s, found %s", p.ControlName(), h.Name)
	}
	var control []byte
	if err == nil {
		control, err = io.ReadAll(io.LimitReader(r.tr, 16<<20))
	}
	if err == nil {
		h, err = r.tr.Next()
	}
	if err == nil && h.Name != DataName(i) {
		err = fmt.Errorf("expected %s, found %s", DataName(i), h.Name)
	}
	if err != nil {
		return Package{}, nil, nil, 0, fmt.Errorf("pkgdisk: %s-%s: %w", p.Name, p.Version, err)
	}
	if ra, ok := r.count.R.(io.ReaderAt); ok {
		// Read at offsets, buffered: what the installer does not read
		// (the files' bytes), the data tar skips by seeking, and its
		// headers come a buffer at a time, not a system call each.
		if r.dataBuf == nil {
			r.dataBuf = make([]byte, 16<<10)
		}
		return p, control, &fileReader{ra: ra, buf: r.dataBuf, base: r.count.N, off: r.count.N, end: r.count.N + h.Size}, r.count.N, nil
	}
	return p, control, r.tr, r.count.N, nil
}

// errControl stops a read once the control part is verified.
var errControl = errors.New("control part read")

// AddPackage adds the package file at p prepared: it is read and
// verified against keys, first its control part, then the whole of it
// again as its data tar is written.
func (w *Writer) AddPackage(p string, keys *sign.Keyring) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	var control []byte
	_, err = apkfile.Read(f, apkfile.ReadOptions{Keys: keys, Control: func(pk *apkfile.Package) error {
		control = pk.ControlTar
		return errControl
	}})
	if !errors.Is(err, errControl) {
		return fmt.Errorf("%s: %w", p, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	return w.AddPrepared(control, func(dw io.Writer) error {
		pk, err := apkfile.Read(bufio.NewReaderSize(f, 1<<20), apkfile.ReadOptions{Keys: keys, DataTar: dw})
		if err == nil && !bytes.Equal(pk.ControlTar, control) {
			err = errors.New("the control part changed while it was read")
		}
		return err
	})
}
