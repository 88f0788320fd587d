-- Flows: sets of tasks with dependencies between them, as on SQLite
-- (0009_flows.sql there). A member is a task with its flow's id and its
-- key; plain tasks leave both NULL. weft_flows keeps each flow's member
-- counts exact; weft_flow_members each member's join condition and its
-- counters over its parents' final outcomes; weft_flow_edges the
-- dependencies (grp: from a "key/*" dependency).
ALTER TABLE weft_tasks ADD COLUMN flow_id TEXT;
ALTER TABLE weft_tasks ADD COLUMN flow_key TEXT;

CREATE UNIQUE INDEX weft_tasks_flow ON weft_tasks (flow_id, flow_key) WHERE flow_id IS NOT NULL;

CREATE TABLE weft_flows (
    id               TEXT    NOT NULL PRIMARY KEY,
    name             TEXT    NOT NULL DEFAULT '',
    state            TEXT    NOT NULL CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled')),
    metadata         JSONB,
    total            BIGINT  NOT NULL,
    blocked          BIGINT  NOT NULL DEFAULT 0,
    completed        BIGINT  NOT NULL DEFAULT 0,
    failed           BIGINT  NOT NULL DEFAULT 0,
    cancelled        BIGINT  NOT NULL DEFAULT 0,
    skipped          BIGINT  NOT NULL DEFAULT 0,
    cancel_requested BOOLEAN NOT NULL DEFAULT false,
    window_start     BIGINT,
    window_done      BIGINT NOT NULL DEFAULT 0,
    prev_rate        DOUBLE PRECISION NOT NULL DEFAULT 0,
    created_at       BIGINT  NOT NULL,
    finalized_at     BIGINT
);

CREATE INDEX weft_flows_state ON weft_flows (state, id);

CREATE TABLE weft_flow_members (
    task_id     TEXT    NOT NULL PRIMARY KEY,
    flow_id     TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    join_kind   TEXT,
    quorum      INTEGER NOT NULL DEFAULT 0,
    let_run     BOOLEAN NOT NULL DEFAULT false,
    all_members BOOLEAN NOT NULL DEFAULT false,
    n_parents   INTEGER NOT NULL DEFAULT 0,
    n_succeeded INTEGER NOT NULL DEFAULT 0,
    n_failed    INTEGER NOT NULL DEFAULT 0,
    n_skipped   INTEGER NOT NULL DEFAULT 0,
    added_by    TEXT,
    reason      TEXT,
    reason_key  TEXT
);

CREATE INDEX weft_flow_members_flow ON weft_flow_members (flow_id, seq);

CREATE TABLE weft_flow_edges (
    parent_id TEXT    NOT NULL,
    child_id  TEXT    NOT NULL,
    grp       BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (parent_id, child_id)
);

CREATE INDEX weft_flow_edges_child ON weft_flow_edges (child_id);
