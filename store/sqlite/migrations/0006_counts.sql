-- Task counts per queue and state, kept in the same transactions as the
-- changes they count (one statement per batch, not per task), so that
-- queue statistics cost the same at ten rows or ten million.
CREATE TABLE weft_counts (
    queue TEXT    NOT NULL,
    state TEXT    NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (queue, state)
) WITHOUT ROWID;

INSERT INTO weft_counts (queue, state, n)
    SELECT queue, state, count(*) FROM weft_tasks GROUP BY queue, state;
