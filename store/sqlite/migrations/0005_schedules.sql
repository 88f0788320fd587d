-- Periodic tasks. spec is a cron expression or "@every <duration>"; next_at
-- is the next slot to enqueue. Each slot's task carries the unique key
-- cron:<name>:<slot>, so a slot is enqueued at most once across nodes.
CREATE TABLE weft_schedules (
    name         TEXT    NOT NULL PRIMARY KEY,
    spec         TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    queue        TEXT    NOT NULL,
    args         BLOB    NOT NULL,
    priority     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    metadata     BLOB,
    missed       TEXT    NOT NULL CHECK (missed IN ('skip', 'run_once')),
    paused       INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
