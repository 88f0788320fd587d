package dashboard

import (
	"fmt"
	"html/template"
	"math"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/weftworks/weft/store"
)

// Charts are inline SVG drawn here, on the server: no script draws them,
// and the stylesheet colours them by class (the Content-Security-Policy
// allows no inline style). Every text in them is escaped.

// series is one line of a chart.
type series struct {
	Name   string
	Values []float64
}

// Chart geometry, in SVG user units.
const (
	chartW, chartH         = 640, 180
	padL, padR, padT, padB = 56, 12, 10, 34
)

// chartSVG draws series over xs as lines, with a y axis of unit (seconds
// are printed as durations).
func chartSVG(xs []time.Time, unit string, ss []series, seconds bool) template.HTML {
	top := 0.0
	for _, s := range ss {
		for _, v := range s.Values {
			top = math.Max(top, v)
		}
	}
	top = niceCeil(top)
	plotW, plotH := float64(chartW-padL-padR), float64(chartH-padT-padB)
	x := func(i int) float64 {
		if len(xs) < 2 {
			return padL
		}
		return padL + plotW*float64(i)/float64(len(xs)-1)
	}
	y := func(v float64) float64 { return padT + plotH*(1-v/top) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s">`, chartW, chartH, template.HTMLEscapeString(unit))
	for i := 0; i <= 4; i++ {
		v := top * float64(i) / 4
		label := fmtAxis(v)
		if seconds {
			label = fmtDur(time.Duration(v * float64(time.Second)))
		}
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/><text class="axis" x="%d" y="%.1f" text-anchor="end">%s</text>`,
			padL, chartW-padR, y(v), y(v), padL-6, y(v)+4, template.HTMLEscapeString(label))
	}
	if len(xs) > 0 {
		for _, i := range []int{0, len(xs) / 2, len(xs) - 1} {
			fmt.Fprintf(&b, `<text class="axis" x="%.1f" y="%d" text-anchor="middle">%s</text>`, x(i), chartH-padB+16, xs[i].UTC().Format("15:04"))
		}
	}
	for si, s := range ss {
		var pts strings.Builder
		for i, v := range s.Values {
			fmt.Fprintf(&pts, "%.1f,%.1f ", x(i), y(v))
		}
		fmt.Fprintf(&b, `<polyline class="line s%d" points="%s"/>`, si, strings.TrimSpace(pts.String()))
		fmt.Fprintf(&b, `<rect class="key s%d" x="%d" y="%d" width="10" height="10"/><text class="legend" x="%d" y="%d">%s</text>`,
			si, padL+si*110, chartH-12, padL+si*110+14, chartH-3, template.HTMLEscapeString(s.Name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every text above is escaped
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten (1 for 0).
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func fmtAxis(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.3gk", v/1e3)
	}
	return fmt.Sprintf("%.3g", v)
}

// DAG geometry.
const (
	nodeW, nodeH = 150, 38
	gapX, gapY   = 60, 14
)

// dagSVG draws a flow's members as a graph: one column per depth (the
// longest chain of parents before a member), edges from parents to
// children, each member a link to its task coloured by its state.
func dagSVG(base string, members []store.FlowMember) template.HTML {
	if len(members) == 0 {
		return ""
	}
	byKey := map[string]int{}
	for i, m := range members {
		byKey[m.Key] = i
	}
	depth := make([]int, len(members))
	for i := range depth {
		depth[i] = -1
	}
	var depthOf func(i int, seen map[int]bool) int
	depthOf = func(i int, seen map[int]bool) int {
		if depth[i] >= 0 {
			return depth[i]
		}
		if seen[i] { // the store refuses cycles; never loop on one
			return 0
		}
		seen[i] = true
		dd := 0
		for _, p := range members[i].DependsOn {
			if j, ok := byKey[p]; ok {
				dd = max(dd, depthOf(j, seen)+1)
			}
		}
		depth[i] = dd
		return dd
	}
	cols := map[int][]int{}
	maxDepth, maxRows := 0, 0
	for i := range members {
		dd := depthOf(i, map[int]bool{})
		cols[dd] = append(cols[dd], i)
		maxDepth = max(maxDepth, dd)
		maxRows = max(maxRows, len(cols[dd]))
	}
	pos := make([][2]int, len(members))
	for dd, idx := range cols {
		sort.Ints(idx)
		for row, i := range idx {
			pos[i] = [2]int{10 + dd*(nodeW+gapX), 10 + row*(nodeH+gapY)}
		}
	}
	w, h := 20+(maxDepth+1)*(nodeW+gapX)-gapX, 20+maxRows*(nodeH+gapY)-gapY
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="dag" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="flow graph">`, w, h, w, h)
	for i, m := range members {
		for _, p := range m.DependsOn {
			j, ok := byKey[p]
			if !ok {
				continue
			}
			x1, y1 := pos[j][0]+nodeW, pos[j][1]+nodeH/2
			x2, y2 := pos[i][0], pos[i][1]+nodeH/2
			fmt.Fprintf(&b, `<path class="edge" d="M%d,%d C%d,%d %d,%d %d,%d"/>`, x1, y1, x1+gapX/2, y1, x2-gapX/2, y2, x2, y2)
		}
	}
	for i, m := range members {
		label := m.Key
		if len(label) > 20 {
			label = label[:19] + "…"
		}
		fmt.Fprintf(&b, `<a href="%s"><g class="node st-%s"><rect x="%d" y="%d" width="%d" height="%d" rx="5"/><text x="%d" y="%d">%s</text><text class="sub" x="%d" y="%d">%s</text><title>%s</title></g></a>`,
			template.HTMLEscapeString(base+"/tasks/"+url.PathEscape(m.TaskID)), template.HTMLEscapeString(string(m.State)),
			pos[i][0], pos[i][1], nodeW, nodeH,
			pos[i][0]+8, pos[i][1]+16, template.HTMLEscapeString(label),
			pos[i][0]+8, pos[i][1]+31, template.HTMLEscapeString(string(m.State)+" · "+m.Kind),
			template.HTMLEscapeString(m.Key+" ("+string(m.State)+")"))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every text above is escaped
}
