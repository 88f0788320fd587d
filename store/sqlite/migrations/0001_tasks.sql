-- Tasks and their event log. Times are Unix microseconds (UTC).
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
) WITHOUT ROWID;

-- The claim reads only pending rows, in priority order within a queue.
CREATE INDEX weft_tasks_claim ON weft_tasks (queue, priority DESC, run_at, id)
    WHERE state = 'pending';

-- Lease renewal and cancel checks read a node's running rows; rescue reads
-- expired ones.
CREATE INDEX weft_tasks_running_owner ON weft_tasks (lease_owner)
    WHERE state = 'running';
CREATE INDEX weft_tasks_running_expiry ON weft_tasks (lease_expires_at)
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

CREATE TABLE weft_events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT    NOT NULL,
    type    TEXT    NOT NULL,
    attempt INTEGER NOT NULL,
    at      INTEGER NOT NULL,
    data    BLOB
);

CREATE INDEX weft_events_task ON weft_events (task_id, seq);
