package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// PutSchedule implements store.Store. The caller validates the schedule.
func (s *Store) PutSchedule(ctx context.Context, sc store.Schedule) error {
	nowUS := micros(s.now())
	paused := 0
	if sc.Paused {
		paused = 1
	}
	return s.writer.do(ctx, func(q *execer) error {
		_, err := q.exec(`INSERT INTO weft_schedules (`+sqlbackend.ScheduleColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, kind = excluded.kind, queue = excluded.queue,
				args = excluded.args, priority = excluded.priority, max_attempts = excluded.max_attempts,
				metadata = excluded.metadata, missed = excluded.missed, paused = excluded.paused,
				next_at = excluded.next_at, updated_at = excluded.updated_at`,
			sc.Name, sc.Spec, sc.Kind, sc.Queue, []byte(sc.Args), sc.Priority, sc.MaxAttempts,
			nullBytes(sc.Metadata), string(sc.Missed), paused, micros(sc.NextAt), nowUS, nowUS)
		if err != nil {
			return fmt.Errorf("put schedule %s: %w", sc.Name, err)
		}
		return nil
	})
}

// PauseSchedule implements store.Store.
func (s *Store) PauseSchedule(ctx context.Context, name string, paused bool) error {
	flag := 0
	if paused {
		flag = 1
	}
	return s.scheduleWrite(ctx, name, "UPDATE weft_schedules SET paused = ?, updated_at = ? WHERE name = ?", flag, micros(s.now()), name)
}

// DeleteSchedule implements store.Store.
func (s *Store) DeleteSchedule(ctx context.Context, name string) error {
	return s.scheduleWrite(ctx, name, "DELETE FROM weft_schedules WHERE name = ?", name)
}

// scheduleWrite runs a statement on one schedule; ErrNotFound when it
// touched none.
func (s *Store) scheduleWrite(ctx context.Context, name, query string, a ...any) error {
	return s.writer.do(ctx, func(q *execer) error {
		r, err := q.exec(query, a...)
		if err != nil {
			return fmt.Errorf("schedule %s: %w", name, err)
		}
		if n, _ := r.RowsAffected(); n == 0 {
			return fmt.Errorf("schedule %s: %w", name, store.ErrNotFound)
		}
		return nil
	})
}

// AdvanceSchedule implements store.Store.
func (s *Store) AdvanceSchedule(ctx context.Context, name string, from, to time.Time) (bool, error) {
	moved := false
	err := s.writer.do(ctx, func(q *execer) error {
		var n string
		err := q.queryRow("UPDATE weft_schedules SET next_at = ? WHERE name = ? AND next_at = ? RETURNING name",
			micros(to), name, micros(from)).Scan(&n)
		moved = err == nil
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("advance schedule %s: %w", name, err)
	}
	return moved, nil
}
