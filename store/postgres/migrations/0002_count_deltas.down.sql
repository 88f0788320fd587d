-- Fold what is pending into weft_counts before the table goes.
WITH folded AS (DELETE FROM weft_count_deltas RETURNING queue, state, n)
INSERT INTO weft_counts (queue, state, n)
SELECT queue, state, sum(n) FROM folded GROUP BY queue, state
ON CONFLICT (queue, state) DO UPDATE SET n = weft_counts.n + excluded.n;
DROP TABLE weft_count_deltas;
