-- Output streams: frames a running task appends under its lease, read
-- from an offset or followed live. weft_frames holds the frames, numbered
-- per task from 1; weft_streams one row per task that has frames, its head:
-- the last seq, the bytes stored (the per-task cap), and the lease epoch of
-- the claim that appended last with the seq before that claim's first
-- frame (writers number their frames per claim, for idempotent retries).
-- A task that never streams has no row in either, and nothing on the paths
-- of enqueue, claim or finish reads them. Both are deleted with their task.
--
-- weft_frames is a rowid table: frames are up to 1 MiB, and a WITHOUT
-- ROWID table keeps whole rows in its b-tree.
CREATE TABLE weft_frames (
    task_id TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    at      INTEGER NOT NULL,
    kind    TEXT    NOT NULL CHECK (kind IN ('text', 'json')),
    data    BLOB    NOT NULL,
    PRIMARY KEY (task_id, seq)
);

CREATE TABLE weft_streams (
    task_id TEXT    NOT NULL PRIMARY KEY,
    seq     INTEGER NOT NULL,
    bytes   INTEGER NOT NULL,
    epoch   INTEGER NOT NULL,
    base    INTEGER NOT NULL
) WITHOUT ROWID;
