package fsprobe

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestExt4(t *testing.T) {
	img := make([]byte, 4096)
	sb := img[1024:]
	binary.LittleEndian.PutUint16(sb[0x38:], 0xEF53)
	copy(sb[0x68:], []byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef})
	copy(sb[0x78:], "alpine-root")
	uuid, label, ok := Ext4(bytes.NewReader(img))
	if !ok || uuid != "01234567-89ab-cdef-0123-456789abcdef" || label != "alpine-root" {
		t.Errorf("Ext4 = %q, %q, %v", uuid, label, ok)
	}
	if _, _, ok := Ext4(bytes.NewReader(make([]byte, 4096))); ok {
		t.Error("no magic: identified")
	}
	if _, _, ok := Ext4(bytes.NewReader(make([]byte, 100))); ok {
		t.Error("short: identified")
	}
}

func TestISO9660(t *testing.T) {
	img := make([]byte, 17*2048)
	pvd := img[16*2048:]
	pvd[0] = 1
	copy(pvd[1:], "CD001")
	copy(pvd[40:72], "ALPINE_LIVE                     ")
	if label, ok := ISO9660(bytes.NewReader(img)); !ok || label != "ALPINE_LIVE" {
		t.Errorf("ISO9660 = %q, %v", label, ok)
	}
	copy(pvd[40:72], make([]byte, 32))
	copy(pvd[40:72], "cidata") // go-diskfs pads with NULs
	if label, _ := ISO9660(bytes.NewReader(img)); label != "cidata" {
		t.Errorf("NUL-padded: %q", label)
	}
	if _, ok := ISO9660(bytes.NewReader(make([]byte, 17*2048))); ok {
		t.Error("no magic: identified")
	}
	if _, ok := ISO9660(bytes.NewReader(make([]byte, 100))); ok {
		t.Error("short: identified")
	}
}

func FuzzProbe(f *testing.F) {
	iso := make([]byte, 17*2048)
	iso[16*2048] = 1
	copy(iso[16*2048+1:], "CD001")
	f.Add(iso)
	f.Add(make([]byte, 4096))
	f.Fuzz(func(t *testing.T, img []byte) {
		Ext4(bytes.NewReader(img))
		if label, ok := ISO9660(bytes.NewReader(img)); ok && len(label) > 32 {
			t.Fatalf("a label of %d bytes", len(label))
		}
	})
}
