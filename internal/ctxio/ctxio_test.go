package ctxio

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReader(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := Reader(ctx, strings.NewReader("abcdef"))
	b := make([]byte, 3)
	if n, err := r.Read(b); n != 3 || err != nil {
		t.Fatalf("%d %v", n, err)
	}
	cancel()
	if _, err := r.Read(b); !errors.Is(err, context.Canceled) {
		t.Errorf("after cancel: %v", err)
	}
	rs := ReadSeeker(ctx, strings.NewReader("abc"))
	if _, err := rs.Seek(0, io.SeekStart); err != nil {
		t.Error(err)
	}
	if _, err := rs.Read(b); !errors.Is(err, context.Canceled) {
		t.Errorf("read seeker after cancel: %v", err)
	}
	if Reader(nil, strings.NewReader("x")) == nil { //nolint:staticcheck // nil ctx: never stops
		t.Error("nil")
	}
}

func TestWriter(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var b strings.Builder
	w := Writer(ctx, &b)
	if _, err := w.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := w.Write([]byte("no")); !errors.Is(err, context.Canceled) || b.String() != "ok" {
		t.Errorf("after cancel: %v %q", err, b.String())
	}
}
