-- Per-minute rollups of each queue and kind, counted from the feed of
-- events by the maintenance leader (store.Rollups), kept for
-- store.RollupRetention. Histograms are JSON arrays of counts in the
-- buckets of store.HistogramBounds.
CREATE TABLE weft_rollups (
    minute    INTEGER NOT NULL,
    queue     TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    enqueued  INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    failed    INTEGER NOT NULL DEFAULT 0,
    retried   INTEGER NOT NULL DEFAULT 0,
    cancelled INTEGER NOT NULL DEFAULT 0,
    wait_hist TEXT    NOT NULL,
    run_hist  TEXT    NOT NULL,
    PRIMARY KEY (minute, queue, kind)
) WITHOUT ROWID;

-- The feed cursor up to which events were counted: one row.
CREATE TABLE weft_rollup_cursor (
    id  INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT INTO weft_rollup_cursor (id, seq) VALUES (1, 0);
