package store

import (
	"testing"
	"time"
)

func TestHistogramQuantile(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 {
		t.Fatal("an empty histogram's median is not 0")
	}
	for range 90 {
		h.Observe(3 * time.Millisecond) // (2ms, 5ms]
	}
	for range 10 {
		h.Observe(2 * time.Hour) // beyond the last bound
	}
	if got := h.Count(); got != 100 {
		t.Fatalf("count = %d, want 100", got)
	}
	if p50 := h.Quantile(0.5); p50 <= 2*time.Millisecond || p50 > 5*time.Millisecond {
		t.Fatalf("p50 = %v, want within (2ms, 5ms]", p50)
	}
	if p99 := h.Quantile(0.99); p99 != time.Hour {
		t.Fatalf("p99 = %v, want the last bound, 1h", p99)
	}
	var sum Histogram
	sum.Add(h)
	sum.Add(h)
	if sum.Count() != 200 || sum.Quantile(0.5) != h.Quantile(0.5) {
		t.Fatalf("sum of two copies: count %d, p50 %v", sum.Count(), sum.Quantile(0.5))
	}
}
