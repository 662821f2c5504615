package embed

import (
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// The agents are embedded zstd-compressed: eight static Go binaries of
// about 4.5 MiB each are 36 MiB, 14 MiB compressed, and one is unpacked
// in about 10 ms when a build needs it. Pack is what the Makefile runs
// on each (go run ./agent/embed/pack): the encoder is the one go.mod
// pins, so the same agent gives the same bytes and bin/alpinist stays
// reproducible.

// Pack compresses an agent binary as the build embeds it.
func Pack(agent []byte) ([]byte, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	defer enc.Close()
	return enc.EncodeAll(agent, nil), nil
}

var decoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxAgent))
})

// maxAgent bounds an unpacked agent.
const maxAgent = 64 << 20

// unpack reverses Pack.
func unpack(z []byte) ([]byte, error) {
	dec, err := decoder()
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	b, err := dec.DecodeAll(z, nil)
	if err != nil {
		return nil, fmt.Errorf("agent: the embedded agent does not unpack (a damaged alpinist binary?): %w", err)
	}
	return b, nil
}
