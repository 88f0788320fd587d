package weft_test

import (
	"testing"

	"github.com/weftworks/weft/internal/benchmark"
)

// BenchmarkStreamAppend measures output stream throughput: WEFT_BENCH_WORKERS
// tasks write WEFT_BENCH_TASKS text frames of 100 bytes in all, each frame
// one durable write, at once.
func BenchmarkStreamAppend(b *testing.B) {
	o := benchOptions(b)
	var total float64
	var n int
	for i := 0; i < b.N; i++ {
		r := runScenario(b, benchmark.StreamAppend, o)
		total, n = total+r.Seconds, n+r.Tasks
	}
	b.ReportMetric(float64(n)/total, "frames/s")
}

// BenchmarkStreamLag measures follower lag: one task writes
// WEFT_BENCH_SAMPLES frames, one every 2ms, while a reader follows its
// stream; percentiles of a frame's write acknowledged to the follower
// receiving it.
func BenchmarkStreamLag(b *testing.B) {
	o := benchOptions(b)
	for i := 0; i < b.N; i++ {
		reportPercentiles(b, runScenario(b, benchmark.StreamLag, o))
	}
}
