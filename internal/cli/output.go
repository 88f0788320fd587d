package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// writeJSON prints v as indented JSON (format json) or as one line
// (format ndjson).
func writeJSON(w io.Writer, format string, v any) error {
	var (
		b   []byte
		err error
	)
	if format == formatNDJSON {
		b, err = json.Marshal(v)
	} else {
		b, err = json.MarshalIndent(v, "", "  ")
	}
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// newTable returns a tabwriter for aligned columns; Flush it.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// timeLayout is how times are shown to people: local, to the second.
const timeLayout = "2006-01-02 15:04:05 MST"

// when shows a time with its distance from now ("3m12s ago", "in 10s").
func when(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(timeLayout) + " (" + relative(t, now) + ")"
}

// whenPtr is when for optional times.
func whenPtr(t *time.Time, now time.Time) string {
	if t == nil {
		return "-"
	}
	return when(*t, now)
}

// relative is the distance from now to t in words.
func relative(t time.Time, now time.Time) string {
	d := now.Sub(t)
	switch {
	case d > -time.Second && d < time.Second:
		return "now"
	case d > 0:
		return shortDuration(d) + " ago"
	default:
		return "in " + shortDuration(-d)
	}
}

// shortDuration rounds d to what a person reads at a glance: seconds under
// an hour, minutes under two days, hours beyond.
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		s := d.Round(time.Minute).String()
		return s[:len(s)-2] // drop the "0s"
	default:
		days := int(d / (24 * time.Hour))
		hours := int((d % (24 * time.Hour)).Round(time.Hour) / time.Hour)
		if hours == 24 {
			days, hours = days+1, 0
		}
		return fmt.Sprintf("%dd%dh", days, hours)
	}
}

// prettyJSON indents raw JSON for people, cut to limit bytes.
func prettyJSON(raw json.RawMessage, limit int) string {
	if len(raw) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "  ", "  "); err != nil {
		buf.Reset()
		buf.Write(raw)
	}
	return truncate(buf.String(), limit)
}

// truncate cuts s to limit bytes, saying how much was left out.
func truncate(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	cut := limit
	// Do not split a UTF-8 sequence.
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return fmt.Sprintf("%s… (%d more bytes)", s[:cut], len(s)-cut)
}

// plural is "1 task", "2 tasks".
func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
