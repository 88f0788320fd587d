//go:build !unix

package benchmark

import "runtime/debug"

// resetPeakRSS returns freed heap to the operating system; without
// getrusage there is no peak to reset.
func resetPeakRSS() bool {
	debug.FreeOSMemory()
	return false
}

// peakRSSMB is unknown without getrusage: 0.
func peakRSSMB() float64 { return 0 }
