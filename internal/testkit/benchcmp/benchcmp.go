// Package benchcmp times one of our writers against the reference tool
// that does the same job, side by side in one benchmark run, so that the
// ratio is measured on the same machine at the same moment: absolute
// times vary between runs on shared machines, ratios are what we track.
package benchcmp

import (
	"testing"
	"time"
)

// SideBySide runs ours then theirs in each iteration and reports the
// mean time of each (ours-ms/op, TOOL-ms/op) and the ratio ours/theirs
// (below 1: ours is faster). ns/op is the sum of both and is zeroed.
func SideBySide(b *testing.B, tool string, ours, theirs func() error) {
	b.Helper()
	var tOurs, tTheirs time.Duration
	for b.Loop() {
		start := time.Now()
		if err := ours(); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		if err := theirs(); err != nil {
			b.Fatalf("%s: %v", tool, err)
		}
		tOurs += mid.Sub(start)
		tTheirs += time.Since(mid)
	}
	n := float64(b.N)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(tOurs.Microseconds())/1000/n, "ours-ms/op")
	b.ReportMetric(float64(tTheirs.Microseconds())/1000/n, tool+"-ms/op")
	b.ReportMetric(float64(tOurs)/float64(tTheirs), "ratio")
}
