-- Tasks and their event log. Times are Unix microseconds (UTC).
--
-- weft_tasks is a rowid table: measured here, claim-and-complete runs about
-- a third faster than with the UUID as a WITHOUT ROWID key, because the
-- partial indexes then carry an 8-byte rowid instead of a 36-byte id.
CREATE TABLE weft_tasks (
    id                 TEXT    NOT NULL PRIMARY KEY,
    kind               TEXT    NOT NULL,
    queue              TEXT    NOT NULL,
    args               BLOB    NOT NULL,
    priority           INTEGER NOT NULL DEFAULT 0,
    state              TEXT    NOT NULL CHECK (state IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    run_at             INTEGER NOT NULL,
    attempt            INTEGER NOT NULL DEFAULT 0,
    max_attempts       INTEGER NOT NULL,
    attempt_timeout_us INTEGER NOT NULL DEFAULT 0,
    errors             BLOB,
    result             BLOB,
    unique_key         TEXT,
    metadata           BLOB,
    lease_owner        TEXT,
    lease_epoch        INTEGER NOT NULL DEFAULT 0,
    lease_expires_at   INTEGER,
    cancel_requested   INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL,
    attempted_at       INTEGER,
    finalized_at       INTEGER
);

-- The claim reads only pending rows, in priority order within a queue; ties
-- go to the oldest row, by rowid, which every index entry already ends with.
CREATE INDEX weft_tasks_claim ON weft_tasks (queue, priority DESC, run_at)
    WHERE state = 'pending';

-- Lease renewal and cancel checks read a node's running rows. Rescue scans
-- all running rows through the same index: there are only as many as there
-- are busy workers, and an index on the expiry would cost every claim and
-- completion another b-tree write.
CREATE INDEX weft_tasks_running ON weft_tasks (lease_owner)
    WHERE state = 'running';

-- A unique key is held while its task is pending, running or completed; a
-- failed or cancelled task releases it.
CREATE UNIQUE INDEX weft_tasks_unique_key ON weft_tasks (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'running', 'completed');

-- Listing the tasks that need attention. Pending and running rows are
-- listed through the indexes above; completed rows, the bulk of the table,
-- are listed by scanning in id order, so the hot path keeps no index for them.
CREATE INDEX weft_tasks_unsuccessful ON weft_tasks (state, id)
    WHERE state IN ('failed', 'cancelled');

-- seq is the rowid: it only grows while a task has events, because a
-- task's events are deleted with the task, never before it.
CREATE TABLE weft_events (
    seq     INTEGER PRIMARY KEY,
    task_id TEXT    NOT NULL,
    type    TEXT    NOT NULL,
    attempt INTEGER NOT NULL,
    at      INTEGER NOT NULL,
    data    BLOB
);

CREATE INDEX weft_events_task ON weft_events (task_id, seq);
