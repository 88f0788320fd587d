-- Limits, routing and fairness (store/limit.go). A task with limits,
-- label requirements or a fairness key carries them in gate (JSON; NULL
-- for every other task) and is claimed through the gated path, which
-- consults the limits' counters; the claim index of every other task
-- leaves it out, so their claims read nothing more. limited marks the
-- tasks whose finish releases slots. vstart is a fair task's start tag in
-- its queue; parked_on the limit key a claim set the task aside for, with
-- blocked_reason saying why, until the key has room (weft_limit_parked
-- orders them by key).
ALTER TABLE weft_tasks ADD COLUMN gate TEXT;
ALTER TABLE weft_tasks ADD COLUMN limited INTEGER NOT NULL DEFAULT 0;
ALTER TABLE weft_tasks ADD COLUMN vstart INTEGER NOT NULL DEFAULT 0;
ALTER TABLE weft_tasks ADD COLUMN parked_on TEXT;
ALTER TABLE weft_tasks ADD COLUMN blocked_reason TEXT;

DROP INDEX weft_tasks_claim;
CREATE INDEX weft_tasks_claim ON weft_tasks (queue, priority DESC, run_at)
    WHERE state = 'pending' AND gate IS NULL;
CREATE INDEX weft_tasks_gated ON weft_tasks (queue, priority DESC, vstart, run_at)
    WHERE state = 'pending' AND gate IS NOT NULL AND parked_on IS NULL;

-- spec is the limit as JSON (concurrency, overrides, rate, period, burst,
-- on_limit).
CREATE TABLE weft_limits (
    name       TEXT    NOT NULL PRIMARY KEY,
    spec       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

-- One row per (limit, key) a task drew on: id is store.LimitRef.ID. tat
-- is the rate's theoretical arrival time; parked counts the tasks set
-- aside for the key, which are reconsidered from ready_at on.
CREATE TABLE weft_limit_keys (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    tat        INTEGER NOT NULL DEFAULT 0,
    parked     INTEGER NOT NULL DEFAULT 0,
    ready_at   INTEGER,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX weft_limit_keys_name ON weft_limit_keys (name, id);
CREATE INDEX weft_limit_keys_ready ON weft_limit_keys (ready_at) WHERE parked > 0;

-- The slots held: a row per running task and concurrency-capped key. A
-- slot counts only while its task is running, so a row left behind never
-- holds a slot; the finish, rescue and suspension that end the run delete
-- it.
CREATE TABLE weft_limit_holds (
    task_id TEXT NOT NULL,
    id      TEXT NOT NULL,
    PRIMARY KEY (task_id, id)
) WITHOUT ROWID;
CREATE INDEX weft_limit_holds_key ON weft_limit_holds (id);

-- Queues that have held gated tasks: only their claims take the gated
-- path.
CREATE TABLE weft_gated_queues (
    queue TEXT    NOT NULL PRIMARY KEY,
    since INTEGER NOT NULL
) WITHOUT ROWID;

-- Fairness: each (queue, key)'s weight and last finish tag.
CREATE TABLE weft_fair_keys (
    queue  TEXT    NOT NULL,
    key    TEXT    NOT NULL,
    weight INTEGER NOT NULL DEFAULT 1,
    finish INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, key)
) WITHOUT ROWID;

-- The tasks set aside, by the key that refused them, in claim order: a
-- table of their own rather than an index of weft_tasks, which every
-- claim and outcome of every task would have to maintain (measured: 15%
-- of PostgreSQL's update cost). A row whose task ended otherwise (an
-- operator's cancel) is dropped when met.
CREATE TABLE weft_limit_parked (
    task_id  TEXT    NOT NULL PRIMARY KEY,
    id       TEXT    NOT NULL,
    priority INTEGER NOT NULL,
    vstart   INTEGER  NOT NULL,
    run_at   INTEGER  NOT NULL
) WITHOUT ROWID;
CREATE INDEX weft_limit_parked_key ON weft_limit_parked (id, priority DESC, vstart, run_at, task_id);

-- The pending tasks of keep_latest keys, which a newer task of the key
-- replaces; a claim takes its tasks out.
CREATE TABLE weft_limit_latest (
    task_id TEXT NOT NULL PRIMARY KEY,
    id      TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX weft_limit_latest_key ON weft_limit_latest (id);
