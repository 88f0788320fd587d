package benchmark

import (
	"math"
	"reflect"
	"slices"
	"time"
)

// Percentiles summarises a set of latency samples.
type Percentiles struct {
	N                  int
	P50, P90, P99, Max time.Duration
}

// Summarize sorts samples in place and reads their percentiles. Each
// percentile p is the sample at index ⌊p·n⌋ of the sorted samples (the
// formula the Go benchmarks always used, so figures stay comparable).
// No samples give zeros.
func Summarize(samples []time.Duration) Percentiles {
	if len(samples) == 0 {
		return Percentiles{}
	}
	slices.Sort(samples)
	return Percentiles{
		N:   len(samples),
		P50: Percentile(samples, 0.50),
		P90: Percentile(samples, 0.90),
		P99: Percentile(samples, 0.99),
		Max: samples[len(samples)-1],
	}
}

// Percentile is the p-th percentile (0 ≤ p ≤ 1) of sorted, which must not
// be empty.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// Millis is d in milliseconds, to the microsecond.
func Millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// msPtr is Millis for the optional fields of a Result.
func msPtr(d time.Duration) *float64 {
	v := Millis(d)
	return &v
}

// Median combines the results of several runs of one scenario: each
// numeric field is the median of the runs' values (the mean of the middle
// two for an even count), and MedianOf is the number of runs. Optional
// fields absent from every run stay absent.
func Median(runs []Result) Result {
	if len(runs) == 0 {
		return Result{}
	}
	out := runs[0]
	// Every numeric field is combined the same way, so a field added to
	// Result later needs no change here.
	ov := reflect.ValueOf(&out).Elem()
	for i := range ov.NumField() {
		f := ov.Field(i)
		switch f.Kind() {
		case reflect.Float64, reflect.Int, reflect.Int64:
			vals := make([]float64, len(runs))
			for j, r := range runs {
				vals[j] = number(reflect.ValueOf(r).Field(i))
			}
			setNumber(f, median(vals))
		case reflect.Pointer:
			var vals []float64
			for _, r := range runs {
				if p := reflect.ValueOf(r).Field(i); !p.IsNil() {
					vals = append(vals, p.Elem().Float())
				}
			}
			if len(vals) == 0 {
				continue
			}
			// Milliseconds to the microsecond, as measured: the mean
			// of two middle values adds no precision.
			m := math.Round(median(vals)*1000) / 1000
			f.Set(reflect.ValueOf(&m))
		}
	}
	out.Run, out.MedianOf = 0, len(runs)
	return out
}

func number(v reflect.Value) float64 {
	if v.Kind() == reflect.Float64 {
		return v.Float()
	}
	return float64(v.Int())
}

func setNumber(f reflect.Value, x float64) {
	if f.Kind() == reflect.Float64 {
		f.SetFloat(x)
		return
	}
	f.SetInt(int64(x + 0.5))
}

func median(vals []float64) float64 {
	slices.Sort(vals)
	n := len(vals)
	if n%2 == 1 {
		return vals[n/2]
	}
	return (vals[n/2-1] + vals[n/2]) / 2
}
