-- Limits, routing and fairness, as on SQLite (0014_limits.sql there).
ALTER TABLE weft_tasks ADD COLUMN gate TEXT;
ALTER TABLE weft_tasks ADD COLUMN limited BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE weft_tasks ADD COLUMN vstart BIGINT NOT NULL DEFAULT 0;
ALTER TABLE weft_tasks ADD COLUMN parked_on TEXT;
ALTER TABLE weft_tasks ADD COLUMN blocked_reason TEXT;

DROP INDEX weft_tasks_claim;
CREATE INDEX weft_tasks_claim ON weft_tasks (queue, priority DESC, run_at, id)
    WHERE state = 'pending' AND gate IS NULL;
CREATE INDEX weft_tasks_gated ON weft_tasks (queue, priority DESC, vstart, run_at, id)
    WHERE state = 'pending' AND gate IS NOT NULL AND parked_on IS NULL;

CREATE TABLE weft_limits (
    name       TEXT   NOT NULL PRIMARY KEY,
    spec       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE weft_limit_keys (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    tat        BIGINT  NOT NULL DEFAULT 0,
    parked     INTEGER NOT NULL DEFAULT 0,
    ready_at   BIGINT,
    updated_at BIGINT  NOT NULL
);
CREATE INDEX weft_limit_keys_name ON weft_limit_keys (name, id);
CREATE INDEX weft_limit_keys_ready ON weft_limit_keys (ready_at) WHERE parked > 0;

CREATE TABLE weft_limit_holds (
    task_id TEXT NOT NULL,
    id      TEXT NOT NULL,
    PRIMARY KEY (task_id, id)
);
CREATE INDEX weft_limit_holds_key ON weft_limit_holds (id);

CREATE TABLE weft_gated_queues (
    queue TEXT   NOT NULL PRIMARY KEY,
    since BIGINT NOT NULL
);

CREATE TABLE weft_fair_keys (
    queue  TEXT    NOT NULL,
    key    TEXT    NOT NULL,
    weight INTEGER NOT NULL DEFAULT 1,
    finish BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, key)
);

-- The tasks set aside, by the key that refused them, in claim order: a
-- table of their own rather than an index of weft_tasks, which every
-- claim and outcome of every task would have to maintain (measured: 15%
-- of PostgreSQL's update cost). A row whose task ended otherwise (an
-- operator's cancel) is dropped when met.
CREATE TABLE weft_limit_parked (
    task_id  TEXT    NOT NULL PRIMARY KEY,
    id       TEXT    NOT NULL,
    priority INTEGER NOT NULL,
    vstart   BIGINT  NOT NULL,
    run_at   BIGINT  NOT NULL
);
CREATE INDEX weft_limit_parked_key ON weft_limit_parked (id, priority DESC, vstart, run_at, task_id);

-- The pending tasks of keep_latest keys, which a newer task of the key
-- replaces; a claim takes its tasks out.
CREATE TABLE weft_limit_latest (
    task_id TEXT NOT NULL PRIMARY KEY,
    id      TEXT NOT NULL
);
CREATE INDEX weft_limit_latest_key ON weft_limit_latest (id);
