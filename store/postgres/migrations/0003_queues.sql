-- Per-queue settings an operator changes at run time. A queue has a row
-- once it was first paused; claims and NextRunAt skip the queues whose row
-- says paused, so a pause holds for every node on the database.
CREATE TABLE weft_queues (
    name   TEXT    NOT NULL PRIMARY KEY,
    paused BOOLEAN NOT NULL DEFAULT false
);
