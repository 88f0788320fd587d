package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// result is one run of one scenario by one system: a line of output, and
// with -json one JSON object.
type result struct {
	Scenario string `json:"scenario"`
	System   string `json:"system"`
	Backend  string `json:"backend"`
	// Tasks is the burn-down's or insert's task count, or the latency
	// scenario's sample count.
	Tasks int `json:"tasks"`
	// Workers is 0 for the insert, which runs none.
	Workers     int     `json:"workers"`
	Seconds     float64 `json:"seconds"`
	TasksPerSec float64 `json:"tasks_per_sec"`
	// The latency percentiles, in milliseconds; null for other scenarios.
	P50 *float64 `json:"p50_ms"`
	P90 *float64 `json:"p90_ms"`
	P99 *float64 `json:"p99_ms"`
	Max *float64 `json:"max_ms"`
	Run int      `json:"run"`
	// SelfCPU and OtherCPU are the shares of all cores used by this
	// process and by every other process (a PostgreSQL server included)
	// during the run, setup included; -1 when unknown. Not in the JSON,
	// whose fields are fixed.
	SelfCPU  float64 `json:"-"`
	OtherCPU float64 `json:"-"`
}

// setMeasure fills the result's figures from what a run measured.
func (r *result) setMeasure(m measure) {
	r.Seconds = m.elapsed.Seconds()
	r.TasksPerSec = float64(r.Tasks) / r.Seconds
	if len(m.samples) == 0 {
		return
	}
	s := slices.Clone(m.samples)
	slices.Sort(s)
	// As reportPercentiles in Weft's benchmark_test.go.
	at := func(p float64) *float64 {
		v := ms(s[min(len(s)-1, int(p*float64(len(s))))])
		return &v
	}
	r.P50, r.P90, r.P99 = at(0.50), at(0.90), at(0.99)
	mx := ms(s[len(s)-1])
	r.Max = &mx
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// report prints each run as it ends and the summary at the end.
type report struct {
	out, human io.Writer
	json       bool
	results    []result
	notes      []string
}

func newReport(out, human io.Writer, asJSON bool) *report {
	return &report{out: out, human: human, json: asJSON}
}

// note records a remark for the end of the output, and shows it now.
func (r *report) note(format string, a ...any) {
	s := fmt.Sprintf(format, a...)
	r.notes = append(r.notes, s)
	fmt.Fprintln(r.human, "note:", s)
}

// fail records a run that did not complete.
func (r *report) fail(run int, scenario string, sys system, err error) {
	r.note("run %d %s %s on %s failed: %v", run, scenario, sys.name(), sys.backend(), err)
}

// add prints a finished run.
func (r *report) add(res result) {
	r.results = append(r.results, res)
	if r.json {
		b, _ := json.Marshal(res)
		fmt.Fprintln(r.out, string(b))
		return
	}
	head := fmt.Sprintf("run %d  %-8s  %-8s  %-6s  %6d tasks  %4d workers  %8.3f s", res.Run, res.Scenario, res.Backend, res.System, res.Tasks, res.Workers, res.Seconds)
	cpu := ""
	if res.SelfCPU >= 0 {
		cpu = fmt.Sprintf("  cpu: self %3.0f%%, others %3.0f%%", res.SelfCPU, res.OtherCPU)
	}
	if res.P50 != nil {
		fmt.Fprintf(r.out, "%s  p50 %6.2f  p90 %6.2f  p99 %6.2f  max %7.2f ms%s\n", head, *res.P50, *res.P90, *res.P99, *res.Max, cpu)
		return
	}
	fmt.Fprintf(r.out, "%s  %9.0f tasks/s%s\n", head, res.TasksPerSec, cpu)
}

// median of the values; the lower middle one for an even count, so that
// it is always a measured value.
func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// summary prints, per scenario and backend, each system's medians over its
// runs and Weft's figure divided by the system's.
func (r *report) summary() {
	if len(r.results) == 0 {
		fmt.Fprintln(r.human, "no results")
		return
	}
	fmt.Fprintln(r.human)
	fmt.Fprintln(r.human, "Summary: medians over runs; weft/x is Weft's median divided by the system's")
	fmt.Fprintln(r.human, "(tasks/s: above 1 means Weft is faster; latency: below 1 means Weft is faster);")
	fmt.Fprintln(r.human, "others cpu% is the median share of both cores that other processes used during the runs")
	fmt.Fprintln(r.human, "(the PostgreSQL server included): a high figure on SQLite means the machine was shared.")
	var scenarios, backends, systems []string
	for _, res := range r.results {
		for _, p := range []struct {
			list *[]string
			v    string
		}{{&scenarios, res.Scenario}, {&backends, res.Backend}, {&systems, res.System}} {
			if !slices.Contains(*p.list, p.v) {
				*p.list = append(*p.list, p.v)
			}
		}
	}
	order := []string{"weft", "raw", "river", "goqite"}
	slices.SortFunc(systems, func(a, b string) int { return slices.Index(order, a) - slices.Index(order, b) })
	for _, sc := range scenarios {
		for _, be := range backends {
			rows := map[string][]result{}
			for _, res := range r.results {
				if res.Scenario == sc && res.Backend == be {
					rows[res.System] = append(rows[res.System], res)
				}
			}
			if len(rows) == 0 {
				continue
			}
			fmt.Fprintf(r.human, "\n%s, %s\n", sc, be)
			tw := tabwriter.NewWriter(r.human, 0, 0, 2, ' ', tabwriter.AlignRight)
			if sc == scenarioLatency {
				r.latencyTable(tw, systems, rows)
			} else {
				r.throughputTable(tw, systems, rows)
			}
			tw.Flush()
		}
	}
	if len(r.notes) > 0 {
		fmt.Fprintln(r.human, "\nNotes:")
		for _, n := range r.notes {
			fmt.Fprintln(r.human, "- "+n)
		}
	}
}

// pick is one figure of every run of a system.
func pick(rs []result, f func(result) float64) []float64 {
	v := make([]float64, len(rs))
	for i, res := range rs {
		v[i] = f(res)
	}
	return v
}

func (r *report) throughputTable(tw io.Writer, systems []string, rows map[string][]result) {
	fmt.Fprintln(tw, "system\truns\ttasks\tworkers\tmedian tasks/s\tmin–max tasks/s\tweft/x\tothers cpu%\t")
	tps := func(res result) float64 { return res.TasksPerSec }
	var weft float64
	if w, ok := rows["weft"]; ok {
		weft = median(pick(w, tps))
	}
	for _, sys := range systems {
		rs, ok := rows[sys]
		if !ok {
			continue
		}
		v := pick(rs, tps)
		ratio := "—"
		if weft > 0 {
			ratio = fmt.Sprintf("%.2f", weft/median(v))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.0f\t%.0f–%.0f\t%s\t%s\t\n", sys, len(rs), rs[0].Tasks, rs[0].Workers, median(v), slices.Min(v), slices.Max(v), ratio, othersCPU(rs))
	}
}

func (r *report) latencyTable(tw io.Writer, systems []string, rows map[string][]result) {
	fmt.Fprintln(tw, "system\truns\tsamples\tworkers\tp50 ms\tp90 ms\tp99 ms\tmax ms\tweft/x p50\tweft/x p99\tothers cpu%\t")
	p50 := func(res result) float64 { return *res.P50 }
	p99 := func(res result) float64 { return *res.P99 }
	var w50, w99 float64
	if w, ok := rows["weft"]; ok {
		w50, w99 = median(pick(w, p50)), median(pick(w, p99))
	}
	for _, sys := range systems {
		rs, ok := rows[sys]
		if !ok {
			continue
		}
		m50, m99 := median(pick(rs, p50)), median(pick(rs, p99))
		r50, r99 := "—", "—"
		if w50 > 0 {
			r50, r99 = ratio(w50, m50), ratio(w99, m99)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%s\t\n", sys, len(rs), rs[0].Tasks, rs[0].Workers,
			m50, median(pick(rs, func(res result) float64 { return *res.P90 })), m99,
			median(pick(rs, func(res result) float64 { return *res.Max })), r50, r99, othersCPU(rs))
	}
}

// othersCPU is the median share of the cores other processes used during
// the runs, or "?" when it could not be read.
func othersCPU(rs []result) string {
	if rs[0].SelfCPU < 0 {
		return "?"
	}
	return fmt.Sprintf("%.0f", median(pick(rs, func(res result) float64 { return res.OtherCPU })))
}

// ratio is a/b with enough digits for ratios far below 1.
func ratio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	q := a / b
	if q < 0.1 {
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.4f", q), "0"), ".")
	}
	return fmt.Sprintf("%.2f", q)
}
