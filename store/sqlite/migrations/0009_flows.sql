-- Flows: sets of tasks with dependencies between them. A member is a task
-- with its flow's id and its key in the flow; plain tasks leave both NULL,
-- so nothing changes for them. weft_flows keeps each flow's member counts
-- exact, written in the transactions that move members, and its rate
-- (members finished in the current window, the previous window's rate);
-- weft_flow_members each member's join condition and its counters over its
-- parents' final outcomes; weft_flow_edges the dependencies (grp: the edge came from a
-- "key/*" dependency, which members the parent adds later join).
ALTER TABLE weft_tasks ADD COLUMN flow_id TEXT;
ALTER TABLE weft_tasks ADD COLUMN flow_key TEXT;

CREATE UNIQUE INDEX weft_tasks_flow ON weft_tasks (flow_id, flow_key) WHERE flow_id IS NOT NULL;

CREATE TABLE weft_flows (
    id               TEXT    NOT NULL PRIMARY KEY,
    name             TEXT    NOT NULL DEFAULT '',
    state            TEXT    NOT NULL CHECK (state = 'running' OR state = 'succeeded' OR state = 'failed' OR state = 'cancelled'),
    metadata         BLOB,
    total            INTEGER NOT NULL,
    blocked          INTEGER NOT NULL DEFAULT 0,
    completed        INTEGER NOT NULL DEFAULT 0,
    failed           INTEGER NOT NULL DEFAULT 0,
    cancelled        INTEGER NOT NULL DEFAULT 0,
    skipped          INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    window_start     INTEGER,
    window_done      INTEGER NOT NULL DEFAULT 0,
    prev_rate        REAL NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    finalized_at     INTEGER
);

CREATE INDEX weft_flows_state ON weft_flows (state, id);

CREATE TABLE weft_flow_members (
    task_id     TEXT    NOT NULL PRIMARY KEY,
    flow_id     TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    join_kind   TEXT,
    quorum      INTEGER NOT NULL DEFAULT 0,
    let_run     INTEGER NOT NULL DEFAULT 0,
    all_members INTEGER NOT NULL DEFAULT 0,
    n_parents   INTEGER NOT NULL DEFAULT 0,
    n_succeeded INTEGER NOT NULL DEFAULT 0,
    n_failed    INTEGER NOT NULL DEFAULT 0,
    n_skipped   INTEGER NOT NULL DEFAULT 0,
    added_by    TEXT,
    reason      TEXT,
    reason_key  TEXT
) WITHOUT ROWID;

CREATE INDEX weft_flow_members_flow ON weft_flow_members (flow_id, seq);

CREATE TABLE weft_flow_edges (
    parent_id TEXT    NOT NULL,
    child_id  TEXT    NOT NULL,
    grp       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (parent_id, child_id)
) WITHOUT ROWID;

CREATE INDEX weft_flow_edges_child ON weft_flow_edges (child_id);
