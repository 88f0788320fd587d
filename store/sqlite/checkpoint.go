package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// checkpointer copies the WAL back into the database file from its own
// connection, on the other core, so that the writer's commits never carry
// a checkpoint. SQLite's automatic checkpoint runs inside whichever commit
// crosses 1,000 WAL pages: measured, it cost the writer about a quarter of
// its time in a burn-down. The writer's connection therefore has automatic
// checkpoints off, and this loop runs a PASSIVE checkpoint — one that never
// waits for, nor blocks, readers or the writer — whenever commits happened
// since the last one.
// A PASSIVE checkpoint never resets the WAL, though: see
// writer.restartWAL for what bounds it.
type checkpointer struct {
	db       *sql.DB
	log      *slog.Logger
	interval time.Duration
	commits  atomic.Int64
	stop     chan struct{}
	done     chan struct{}
}

// walWarnFrames is the WAL size, in pages, past which an incomplete
// checkpoint is worth a warning (about 1 GiB of 4 KiB pages).
const walWarnFrames = 1 << 18

func newCheckpointer(db *sql.DB, interval time.Duration, log *slog.Logger) *checkpointer {
	c := &checkpointer{db: db, log: log, interval: interval, stop: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	return c
}

// committed records that the writer committed; called after each group.
func (c *checkpointer) committed() { c.commits.Add(1) }

func (c *checkpointer) loop() {
	defer close(c.done)
	ticker := time.NewTicker(c.interval)
	defer ticker.Stop()
	var seen int64
	for {
		select {
		case <-c.stop:
			return
		case <-ticker.C:
		}
		n := c.commits.Load()
		if n == seen {
			continue
		}
		seen = n
		if err := c.checkpoint("PASSIVE"); err != nil {
			c.log.Warn("sqlite: checkpoint", "err", err)
		}
	}
}

func (c *checkpointer) checkpoint(mode string) error {
	var busy, logFrames, done int
	err := c.db.QueryRowContext(context.Background(), "PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &logFrames, &done)
	if err != nil {
		return fmt.Errorf("wal_checkpoint(%s): %w", mode, err)
	}
	if logFrames > walWarnFrames && done < logFrames {
		c.log.Warn("sqlite: the WAL keeps growing; a long-lived reader may be holding an old snapshot",
			"wal_frames", logFrames, "checkpointed", done)
	}
	return nil
}

// close stops the loop. SQLite itself checkpoints and removes the WAL when
// the last connection to the file closes.
func (c *checkpointer) close() {
	close(c.stop)
	<-c.done
}
