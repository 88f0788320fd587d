-- The worker registry. A node records the queues it works and the kinds it
-- runs (JSON arrays; kinds NULL: it claims every kind), so that an
-- operator can see why a task waits. Remote workers, which claim over the
-- HTTP API and have no node row, are recorded by the server that serves
-- their claims, at most once per worker every few seconds; a worker not
-- seen for a day is forgotten.
ALTER TABLE weft_nodes ADD COLUMN kinds TEXT;
ALTER TABLE weft_nodes ADD COLUMN queues TEXT;

CREATE TABLE weft_workers (
    id            TEXT    NOT NULL PRIMARY KEY,
    host          TEXT    NOT NULL,
    kinds         TEXT,
    queues        TEXT    NOT NULL,
    first_seen_at INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL
);
