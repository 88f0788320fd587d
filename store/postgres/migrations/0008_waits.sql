-- Waits, as on SQLite (0012_waits.sql there).
ALTER TABLE weft_tasks ADD COLUMN wait_spec JSONB;
ALTER TABLE weft_tasks ADD COLUMN wait_until BIGINT;

CREATE INDEX weft_tasks_wait_until ON weft_tasks (wait_until) WHERE state = 'waiting';

CREATE TABLE weft_waitpoints (
    id          TEXT    NOT NULL PRIMARY KEY,
    task_id     TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    allow       JSONB,
    expires_at  BIGINT,
    state       TEXT    NOT NULL CHECK (state IN ('open', 'resolved')),
    resolution  TEXT,
    created_at  BIGINT  NOT NULL,
    resolved_at BIGINT,
    UNIQUE (task_id, name)
);

CREATE TABLE weft_signals (
    id           TEXT    NOT NULL PRIMARY KEY,
    waitpoint_id TEXT    NOT NULL,
    task_id      TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    payload      JSONB,
    key          TEXT    NOT NULL,
    source       TEXT,
    received_at  BIGINT  NOT NULL,
    UNIQUE (waitpoint_id, key)
);

CREATE INDEX weft_signals_task ON weft_signals (task_id, received_at);

CREATE TABLE weft_signing_keys (
    kid        TEXT   NOT NULL PRIMARY KEY,
    secret     BYTEA  NOT NULL,
    created_at BIGINT NOT NULL
);
