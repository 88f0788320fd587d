package sqlbackend

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/weftworks/weft/store"
)

// Rollups: weft_rollups holds one row per minute, queue and kind, with its
// histograms as JSON arrays of counts; weft_rollup_cursor holds the one
// cursor of the feed up to which events were counted. Only the maintenance
// leader writes them, and the cursor's compare-and-set keeps a previous
// leader's late write from counting events twice.

const rollupColumns = "minute, queue, kind, enqueued, completed, failed, retried, cancelled, wait_hist, run_hist"

func scanRollup(r Rows) (store.Rollup, error) {
	var (
		ro        store.Rollup
		minute    int64
		wait, run string
	)
	if err := r.Scan(&minute, &ro.Queue, &ro.Kind, &ro.Enqueued, &ro.Completed, &ro.Failed, &ro.Retried, &ro.Cancelled, &wait, &run); err != nil {
		return ro, err
	}
	ro.Minute = FromMicros(minute)
	var err error
	if ro.Wait, err = parseHist(wait); err != nil {
		return ro, fmt.Errorf("wait histogram: %w", err)
	}
	if ro.Run, err = parseHist(run); err != nil {
		return ro, fmt.Errorf("run histogram: %w", err)
	}
	return ro, nil
}

// parseHist reads a histogram as histJSON wrote it, a JSON array of
// integers, without encoding/json: a day of rollups is tens of thousands
// of them, and the dashboard's overview reads them all.
func parseHist(s string) (store.Histogram, error) {
	s = strings.TrimSpace(s)
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return nil, fmt.Errorf("%q is not an array of counts", s)
	}
	h := store.Histogram{}
	body := s[1 : len(s)-1]
	if strings.TrimSpace(body) == "" {
		return h, nil
	}
	h = make(store.Histogram, 0, len(store.HistogramBounds)+1)
	for f := range strings.SplitSeq(body, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an array of counts", s)
		}
		h = append(h, n)
	}
	return h, nil
}

func histJSON(h store.Histogram) string {
	if h == nil {
		h = store.Histogram{}
	}
	b, _ := json.Marshal(h) // a slice of integers always encodes
	return string(b)
}

// RollupCursor reads the rollups' cursor.
func (f FlowStore) RollupCursor(ctx context.Context, db Querier) (int64, error) {
	var seq int64
	if err := f.queryRow(ctx, db, "SELECT seq FROM weft_rollup_cursor WHERE id = 1").Scan(&seq); err != nil {
		return 0, fmt.Errorf("read rollup cursor: %w", err)
	}
	return seq, nil
}

// AddRollups moves the cursor from from to to and, when it was at from,
// adds rows to the stored rollups, in tx.
func (f FlowStore) AddRollups(ctx context.Context, tx Tx, from, to int64, rows []store.Rollup) (bool, error) {
	n, err := f.exec(ctx, tx, "UPDATE weft_rollup_cursor SET seq = ? WHERE id = 1 AND seq = ?", to, from)
	if err != nil {
		return false, fmt.Errorf("move rollup cursor: %w", err)
	}
	if n == 0 {
		return false, nil
	}
	if len(rows) == 0 {
		return true, nil
	}
	// The stored rows of the minutes concerned, summed with the new ones.
	type key struct {
		minute      int64
		queue, kind string
	}
	merged := make(map[key]*store.Rollup, len(rows))
	var order []key
	lo, hi := Micros(rows[0].Minute), Micros(rows[0].Minute)
	for _, r := range rows {
		k := key{Micros(r.Minute), r.Queue, r.Kind}
		lo, hi = min(lo, k.minute), max(hi, k.minute)
		if m, ok := merged[k]; ok {
			m.Add(r)
			continue
		}
		c := r
		c.Wait, c.Run = append(store.Histogram(nil), r.Wait...), append(store.Histogram(nil), r.Run...)
		merged[k] = &c
		order = append(order, k)
	}
	stored, err := collect(ctx, tx, "read rollups", f.d.Bind("SELECT "+rollupColumns+" FROM weft_rollups WHERE minute >= ? AND minute <= ?"+f.lockSuffix()),
		[]any{lo, hi}, scanRollup)
	if err != nil {
		return false, err
	}
	for _, s := range stored {
		if m, ok := merged[key{Micros(s.Minute), s.Queue, s.Kind}]; ok {
			m.Add(s)
		}
	}
	const perRow = 10
	for len(order) > 0 {
		n := min(len(order), inChunk/perRow)
		var b strings.Builder
		args := make([]any, 0, n*perRow)
		for i, k := range order[:n] {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
			m := merged[k]
			args = append(args, k.minute, m.Queue, m.Kind, m.Enqueued, m.Completed, m.Failed, m.Retried, m.Cancelled, histJSON(m.Wait), histJSON(m.Run))
		}
		if _, err := f.exec(ctx, tx, "INSERT INTO weft_rollups ("+rollupColumns+") VALUES "+b.String()+`
			ON CONFLICT (minute, queue, kind) DO UPDATE SET enqueued = excluded.enqueued, completed = excluded.completed,
				failed = excluded.failed, retried = excluded.retried, cancelled = excluded.cancelled,
				wait_hist = excluded.wait_hist, run_hist = excluded.run_hist`, args...); err != nil {
			return false, fmt.Errorf("write rollups: %w", err)
		}
		order = order[n:]
	}
	return true, nil
}

// lockSuffix locks the rows a transaction reads to rewrite.
func (f FlowStore) lockSuffix() string {
	if f.d.Lock == "" {
		return ""
	}
	return " " + f.d.Lock
}

// ReadRollups reads the rollups of minutes at or after since.
func (f FlowStore) ReadRollups(ctx context.Context, db Querier, since time.Time) ([]store.Rollup, error) {
	return collect(ctx, db, "read rollups", f.d.Bind("SELECT "+rollupColumns+" FROM weft_rollups WHERE minute >= ? ORDER BY minute, queue, kind"),
		[]any{Micros(since)}, scanRollup)
}

// PurgeRollups deletes the rollups of minutes before before.
func (f FlowStore) PurgeRollups(ctx context.Context, tx Tx, before time.Time) (int, error) {
	n, err := f.exec(ctx, tx, "DELETE FROM weft_rollups WHERE minute < ?", Micros(before))
	if err != nil {
		return 0, fmt.Errorf("purge rollups: %w", err)
	}
	return int(n), nil
}
