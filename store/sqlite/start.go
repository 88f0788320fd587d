package sqlite

import (
	"context"
	"database/sql/driver"
	"fmt"

	"github.com/weftworks/weft/store"
)

// Started implements store.Store. It is a light write, like a claim: a
// start lost to a power failure leaves the task leased and unstarted, and
// its lease expires as the claim's would.
func (s *Store) Started(ctx context.Context, starts []store.Start) error {
	if len(starts) == 0 {
		return nil
	}
	// Each statement fences and stamps a chunk of the batch; the started
	// events are written from the rows it changed, in the same
	// transaction.
	return s.writer.doLight(ctx, func(q *execer) error {
		for rest := starts; len(rest) > 0; {
			chunk := rest[:min(len(rest), finishChunk)]
			rest = rest[len(chunk):]
			if err := recordStarts(q, chunk); err != nil {
				return err
			}
		}
		return nil
	})
}

func recordStarts(q *execer, starts []store.Start) error {
	a := make(args, 0, 3*len(starts))
	for _, st := range starts {
		a.add(st.TaskID, st.Epoch, micros(st.At))
	}
	var ev args
	n := 0
	err := q.rawQuery(`UPDATE weft_tasks SET attempted_at = v.column3 FROM (VALUES `+placeholders(len(starts), 3)+`) AS v
		WHERE weft_tasks.id = v.column1 AND weft_tasks.lease_epoch = v.column2 AND weft_tasks.state = 'running'
			AND weft_tasks.attempted_at IS NULL
		RETURNING weft_tasks.id, weft_tasks.attempt, weft_tasks.attempted_at`, a, func(v []driver.Value) error {
		ev.add(asString(v[0]), string(store.EventStarted), asInt64(v[1]), asInt64(v[2]), nil)
		n++
		return nil
	})
	if err != nil {
		return fmt.Errorf("record starts: %w", err)
	}
	if n == 0 {
		return nil
	}
	if err := q.rawExec("INSERT INTO weft_events (task_id, type, attempt, at, data) VALUES "+placeholders(n, 5), ev); err != nil {
		return fmt.Errorf("record starts: insert started events: %w", err)
	}
	return nil
}
