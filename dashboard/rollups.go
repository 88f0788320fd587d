package dashboard

import (
	"context"
	"sync"
	"time"

	"github.com/weftworks/weft/store"
)

// rollupCache keeps the rollups of settled minutes, those older than
// settleAfter, which the counter no longer changes unless it fell that far
// behind: the overview of a day reads only the minutes since from the
// store (tens of thousands of rows otherwise, 70-160 ms at 15 queue and
// kind pairs).
type rollupCache struct {
	mu sync.Mutex
	// rows are the rollups of the minutes in [from, to), by minute.
	rows     []store.Rollup
	from, to time.Time
}

// settleAfter is how old a minute must be to be cached.
const settleAfter = 10 * time.Minute

// rollups reads the rollups of minutes at or after since, by minute.
func (d *Dashboard) rollups(ctx context.Context, since time.Time) ([]store.Rollup, error) {
	c := &d.cache
	now := time.Now()
	settled := now.Add(-settleAfter).Truncate(time.Minute)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rows == nil || since.Before(c.from) || !since.Before(c.to) {
		rows, err := d.st.ReadRollups(ctx, since)
		if err != nil {
			return nil, err
		}
		c.rows, c.from, c.to = nil, since, since
		c.extend(rows, settled)
		return rows, nil
	}
	recent, err := d.st.ReadRollups(ctx, c.to)
	if err != nil {
		return nil, err
	}
	// Forget what retention deleted.
	if oldest := now.Add(-store.RollupRetention); c.from.Before(oldest) {
		i := 0
		for i < len(c.rows) && c.rows[i].Minute.Before(oldest) {
			i++
		}
		c.rows, c.from = c.rows[i:], oldest.Truncate(time.Minute)
	}
	i := 0
	for i < len(c.rows) && c.rows[i].Minute.Before(since) {
		i++
	}
	out := make([]store.Rollup, 0, len(c.rows)-i+len(recent))
	out = append(append(out, c.rows[i:]...), recent...)
	c.extend(recent, settled)
	return out, nil
}

// extend caches the rows, read from c.to on, of minutes before settled.
func (c *rollupCache) extend(rows []store.Rollup, settled time.Time) {
	if !settled.After(c.to) {
		return
	}
	for _, r := range rows {
		if !r.Minute.Before(settled) {
			break
		}
		c.rows = append(c.rows, r)
	}
	if c.rows == nil {
		c.rows = []store.Rollup{}
	}
	c.to = settled
}
