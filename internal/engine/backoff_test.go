package engine

import (
	"testing"
	"time"
)

func TestDefaultBackoffBounds(t *testing.T) {
	for attempt := -2; attempt <= 25; attempt++ {
		n := max(attempt, 1)
		d := time.Hour
		if n <= 20 {
			d = min(time.Second<<(n-1), time.Hour)
		}
		for range 50 {
			got := DefaultBackoff(attempt)
			if got < d/2 || got >= d {
				t.Fatalf("DefaultBackoff(%d) = %v, want in [%v, %v)", attempt, got, d/2, d)
			}
		}
	}
}

func TestDefaultBackoffFixedPoints(t *testing.T) {
	// Spot checks independent of the formula above.
	for _, c := range []struct {
		attempt int
		lo, hi  time.Duration
	}{
		{0, 500 * time.Millisecond, time.Second},
		{1, 500 * time.Millisecond, time.Second},
		{2, time.Second, 2 * time.Second},
		{3, 2 * time.Second, 4 * time.Second},
		{12, 1024 * time.Second, 2048 * time.Second},
		{13, 30 * time.Minute, time.Hour}, // 4096s is past the cap
		{100, 30 * time.Minute, time.Hour},
		{1 << 30, 30 * time.Minute, time.Hour},
	} {
		got := DefaultBackoff(c.attempt)
		if got < c.lo || got >= c.hi {
			t.Errorf("DefaultBackoff(%d) = %v, want in [%v, %v)", c.attempt, got, c.lo, c.hi)
		}
	}
}

func TestDefaultBackoffJitters(t *testing.T) {
	first := DefaultBackoff(5)
	for range 100 {
		if DefaultBackoff(5) != first {
			return
		}
	}
	t.Fatalf("DefaultBackoff(5) returned %v on 101 calls; no jitter", first)
}
