-- Weft's schema on PostgreSQL. Times are Unix microseconds, as on SQLite,
-- so both backends order and compare alike.
CREATE TABLE weft_tasks (
    id                 TEXT    NOT NULL PRIMARY KEY,
    kind               TEXT    NOT NULL,
    queue              TEXT    NOT NULL,
    args               JSONB   NOT NULL,
    priority           INTEGER NOT NULL DEFAULT 0,
    state              TEXT    NOT NULL CHECK (state IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    run_at             BIGINT  NOT NULL,
    attempt            INTEGER NOT NULL DEFAULT 0,
    max_attempts       INTEGER NOT NULL,
    attempt_timeout_us BIGINT  NOT NULL DEFAULT 0,
    errors             JSONB,
    result             JSONB,
    unique_key         TEXT,
    metadata           JSONB,
    lease_owner        TEXT,
    lease_epoch        BIGINT  NOT NULL DEFAULT 0,
    lease_expires_at   BIGINT,
    cancel_requested   BOOLEAN NOT NULL DEFAULT false,
    resumable          BOOLEAN NOT NULL DEFAULT true,
    created_at         BIGINT  NOT NULL,
    attempted_at       BIGINT,
    finalized_at       BIGINT
);

CREATE INDEX weft_tasks_claim ON weft_tasks (queue, priority DESC, run_at, id) WHERE state = 'pending';
CREATE INDEX weft_tasks_running ON weft_tasks (lease_owner) WHERE state = 'running';
CREATE UNIQUE INDEX weft_tasks_unique_key ON weft_tasks (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'running', 'completed');
CREATE INDEX weft_tasks_unsuccessful ON weft_tasks (state, id) WHERE state IN ('failed', 'cancelled');

CREATE TABLE weft_events (
    seq     BIGSERIAL PRIMARY KEY,
    task_id TEXT    NOT NULL,
    type    TEXT    NOT NULL,
    attempt INTEGER NOT NULL,
    at      BIGINT  NOT NULL,
    data    JSONB
);
CREATE INDEX weft_events_task ON weft_events (task_id, seq);

CREATE TABLE weft_leaders (
    name       TEXT   NOT NULL PRIMARY KEY,
    holder     TEXT   NOT NULL,
    term       BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE weft_nodes (
    id           TEXT    NOT NULL PRIMARY KEY,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   BIGINT  NOT NULL,
    heartbeat_at BIGINT  NOT NULL
);

CREATE TABLE weft_schedules (
    name         TEXT    NOT NULL PRIMARY KEY,
    spec         TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    queue        TEXT    NOT NULL,
    args         JSONB   NOT NULL,
    priority     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    metadata     JSONB,
    missed       TEXT    NOT NULL CHECK (missed IN ('skip', 'run_once')),
    paused       BOOLEAN NOT NULL DEFAULT false,
    next_at      BIGINT  NOT NULL,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);

CREATE TABLE weft_counts (
    queue TEXT   NOT NULL,
    state TEXT   NOT NULL,
    n     BIGINT NOT NULL,
    PRIMARY KEY (queue, state)
);
