-- Waits: a running task creates waitpoints and suspends on them until
-- signals arrive. A waiting task keeps its wait (which waitpoints, how
-- their signals combine, the timeout) in wait_spec and the time its
-- timeout is due in wait_until; plain tasks leave both NULL.
ALTER TABLE weft_tasks ADD COLUMN wait_spec BLOB;
ALTER TABLE weft_tasks ADD COLUMN wait_until INTEGER;

CREATE INDEX weft_tasks_wait_until ON weft_tasks (wait_until) WHERE state = 'waiting';

CREATE TABLE weft_waitpoints (
    id          TEXT    NOT NULL PRIMARY KEY,
    task_id     TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    allow       BLOB,
    expires_at  INTEGER,
    state       TEXT    NOT NULL CHECK (state = 'open' OR state = 'resolved'),
    resolution  TEXT,
    created_at  INTEGER NOT NULL,
    resolved_at INTEGER,
    UNIQUE (task_id, name)
);

CREATE TABLE weft_signals (
    id           TEXT    NOT NULL PRIMARY KEY,
    waitpoint_id TEXT    NOT NULL,
    task_id      TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    payload      BLOB,
    key          TEXT    NOT NULL,
    source       TEXT,
    received_at  INTEGER NOT NULL,
    UNIQUE (waitpoint_id, key)
);

CREATE INDEX weft_signals_task ON weft_signals (task_id, received_at);

-- The key waitpoint tokens are signed with when the deployment configures
-- none, made on first use so that tokens survive restarts.
CREATE TABLE weft_signing_keys (
    kid        TEXT    NOT NULL PRIMARY KEY,
    secret     BLOB    NOT NULL,
    created_at INTEGER NOT NULL
);
