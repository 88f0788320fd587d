-- Limits, routing and fairness (store/limit.go). A task with limits,
-- label requirements or a fairness key carries them in gate (JSON; NULL
-- for every other task) and is claimed through the gated path, which
-- consults the limits' counters; the claim index of every other task
-- leaves it out, so their claims read nothing more. limited marks the
-- tasks whose finish releases slots. vstart is a fair task's start tag in
-- its queue; parked_on the limit key a claim set the task aside for, with
-- blocked_reason saying why, until the key has room. latest_on is the
-- key of a keep_latest limit: a newer task of the key replaces it until it
-- is claimed. The indexes of set-aside and keep_latest tasks name no
-- state, so that the claims and outcomes of other tasks, which change
-- the state, never touch them: the columns are cleared instead when a
-- task leaves their use (and by the limits reconciler, for a task ended
-- otherwise).
ALTER TABLE weft_tasks ADD COLUMN gate TEXT;
ALTER TABLE weft_tasks ADD COLUMN limited INTEGER NOT NULL DEFAULT 0;
ALTER TABLE weft_tasks ADD COLUMN vstart INTEGER NOT NULL DEFAULT 0;
ALTER TABLE weft_tasks ADD COLUMN parked_on TEXT;
ALTER TABLE weft_tasks ADD COLUMN blocked_reason TEXT;
ALTER TABLE weft_tasks ADD COLUMN latest_on TEXT;

DROP INDEX weft_tasks_claim;
CREATE INDEX weft_tasks_claim ON weft_tasks (queue, priority DESC, run_at)
    WHERE state = 'pending' AND gate IS NULL;
CREATE INDEX weft_tasks_gated ON weft_tasks (queue, priority DESC, vstart, run_at)
    WHERE state = 'pending' AND gate IS NOT NULL AND parked_on IS NULL;
CREATE INDEX weft_tasks_parked ON weft_tasks (parked_on, priority DESC, vstart, run_at)
    WHERE parked_on IS NOT NULL;
CREATE INDEX weft_tasks_latest ON weft_tasks (latest_on)
    WHERE latest_on IS NOT NULL;

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
