-- Per-minute rollups of each queue and kind, counted from the feed of
-- events by the maintenance leader (store.Rollups), kept for
-- store.RollupRetention. Histograms are JSON arrays of counts in the
-- buckets of store.HistogramBounds, kept as text: they are only read
-- whole.
CREATE TABLE weft_rollups (
    minute    BIGINT NOT NULL,
    queue     TEXT   NOT NULL,
    kind      TEXT   NOT NULL,
    enqueued  BIGINT NOT NULL DEFAULT 0,
    completed BIGINT NOT NULL DEFAULT 0,
    failed    BIGINT NOT NULL DEFAULT 0,
    retried   BIGINT NOT NULL DEFAULT 0,
    cancelled BIGINT NOT NULL DEFAULT 0,
    wait_hist TEXT   NOT NULL,
    run_hist  TEXT   NOT NULL,
    PRIMARY KEY (minute, queue, kind)
);

-- The feed cursor up to which events were counted: one row.
CREATE TABLE weft_rollup_cursor (
    id  INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq BIGINT  NOT NULL
);
INSERT INTO weft_rollup_cursor (id, seq) VALUES (1, 0);
