//go:build unix

package benchmark

import (
	"os"
	"runtime"
	"runtime/debug"
	"syscall"
)

// resetPeakRSS makes the next peakRSSMB report the peak from now on rather
// than since the process started, so that each scenario of one `weft
// bench` process gets its own figure: it returns freed heap to the
// operating system, then (Linux only) resets the kernel's high-water mark
// through /proc/self/clear_refs. It reports whether the mark was reset.
func resetPeakRSS() bool {
	debug.FreeOSMemory()
	if runtime.GOOS != "linux" {
		return false
	}
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// peakRSSMB is the process's peak resident set size in MiB, from
// getrusage(RUSAGE_SELF): ru_maxrss is in KiB on Linux and the BSDs, in
// bytes on macOS.
func peakRSSMB() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	kib := float64(ru.Maxrss)
	if runtime.GOOS == "darwin" || runtime.GOOS == "ios" {
		kib /= 1024
	}
	return kib / 1024
}
