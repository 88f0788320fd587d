-- Output streams: frames a running task appends under its lease, read
-- from an offset or followed live. weft_frames holds the frames, numbered
-- per task from 1; weft_streams one row per task that has frames, its head:
-- the last seq, the bytes stored (the per-task cap), and the lease epoch of
-- the claim that appended last with the seq before that claim's first
-- frame (writers number their frames per claim, for idempotent retries).
-- A task that never streams has no row in either, and nothing on the paths
-- of enqueue, claim or finish reads them. Both are deleted with their task.
-- Data is BYTEA for both kinds: JSON frames are kept byte for byte, so a
-- retried append compares equal.
CREATE TABLE weft_frames (
    task_id TEXT    NOT NULL,
    seq     BIGINT  NOT NULL,
    attempt INTEGER NOT NULL,
    at      BIGINT  NOT NULL,
    kind    TEXT    NOT NULL CHECK (kind IN ('text', 'json')),
    data    BYTEA   NOT NULL,
    PRIMARY KEY (task_id, seq)
);

CREATE TABLE weft_streams (
    task_id TEXT   NOT NULL PRIMARY KEY,
    seq     BIGINT NOT NULL,
    bytes   BIGINT NOT NULL,
    epoch   BIGINT NOT NULL,
    base    BIGINT NOT NULL
);
