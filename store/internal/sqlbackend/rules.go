package sqlbackend

import (
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/weftworks/weft/store"
)

// LeaseLostOrMissing tells a stale epoch from an unknown task, once a
// statement fenced on taskID's lease epoch found no row. exists is the
// task read by id alone, selecting any one integer column: no row means
// there is no such task, a row that the epoch is no longer its lease.
func LeaseLostOrMissing(exists Row, taskID string, epoch int64) error {
	var one int
	err := exists.Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("task %s: %w", taskID, store.ErrNotFound)
	case err != nil:
		return err
	}
	return fmt.Errorf("task %s epoch %d: %w", taskID, epoch, store.ErrLeaseLost)
}

// CheckQueueName refuses, before anything is written, a queue name that no
// task could be enqueued into.
func CheckQueueName(queue string) error {
	if !store.ValidName(queue) {
		return &store.ValidationError{Index: -1, Field: "queue", Message: fmt.Sprintf("%q is not a valid name", queue)}
	}
	return nil
}

// defaultRescueLimit is RescueParams.Limit's default.
const defaultRescueLimit = 1000

// RescueBounds applies p's defaults at now: how many tasks one Rescue takes
// at most, and the heartbeat time (in Micros) before which a node counts as
// dead — the lowest time there is when p.DeadAfter is not positive, so
// that none does and one statement serves both cases.
func RescueBounds(p store.RescueParams, now time.Time) (limit int, deadBefore int64) {
	limit = p.Limit
	if limit <= 0 {
		limit = defaultRescueLimit
	}
	deadBefore = math.MinInt64
	if p.DeadAfter > 0 {
		deadBefore = Micros(now.Add(-p.DeadAfter))
	}
	return limit, deadBefore
}

// NodeTimes checks a node's heartbeat (an id, valid queue and kind names)
// and gives the times its row holds, in Micros: it beats now, and started
// now unless it says otherwise.
func NodeTimes(n store.Node, now time.Time) (started, heartbeat int64, err error) {
	if n.ID == "" {
		return 0, 0, &store.ValidationError{Index: -1, Field: "node id", Message: "must not be empty"}
	}
	if err := checkNames(n.Queues, n.Kinds); err != nil {
		return 0, 0, err
	}
	heartbeat = Micros(now)
	started = heartbeat
	if !n.StartedAt.IsZero() {
		started = Micros(n.StartedAt)
	}
	return started, heartbeat, nil
}

// CheckLead refuses a claim to leadership that names no role or holder, or
// would hold for no time.
func CheckLead(role, holder string, ttl time.Duration) error {
	if role == "" || holder == "" || ttl <= 0 {
		return &store.ValidationError{Index: -1, Field: "lead", Message: "role, holder and a positive ttl are required"}
	}
	return nil
}

// CheckSchemaVersion refuses a database whose schema version, current, is
// newer than latest, the newest migration this build has: the build would
// read and write a schema it does not know.
func CheckSchemaVersion(current, latest int) error {
	if current > latest {
		return fmt.Errorf("database schema version %d is newer than this build knows (%d): upgrade weft", current, latest)
	}
	return nil
}
