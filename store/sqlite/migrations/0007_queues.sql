-- Per-queue settings an operator changes at run time. A queue has a row
-- once it was first paused; claims and NextRunAt skip the queues whose row
-- says paused, so a pause holds for every process on the file.
CREATE TABLE weft_queues (
    name   TEXT    NOT NULL PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
