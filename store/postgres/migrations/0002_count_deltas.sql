-- Count changes are appended here rather than applied to weft_counts in
-- place: updating a queue's counter rows in place made every claim and
-- every batch of outcomes wait for the previous transaction's row locks.
-- Maintain folds the deltas into weft_counts; Stats adds both.
CREATE TABLE weft_count_deltas (
    id    BIGSERIAL PRIMARY KEY,
    queue TEXT   NOT NULL,
    state TEXT   NOT NULL,
    n     BIGINT NOT NULL
);
