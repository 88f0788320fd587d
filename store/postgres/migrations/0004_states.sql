-- The states flows, waits and limits need: blocked (waiting on
-- dependencies, limits or budgets), waiting (suspended on a waitpoint) and
-- skipped (terminal: a dependency condition can never hold). Blocked and
-- waiting tasks hold their unique key like pending ones; skipped tasks
-- release it, like failed and cancelled ones.
ALTER TABLE weft_tasks DROP CONSTRAINT weft_tasks_state_check;
ALTER TABLE weft_tasks ADD CONSTRAINT weft_tasks_state_check
    CHECK (state IN ('pending', 'blocked', 'running', 'waiting', 'completed', 'failed', 'cancelled', 'skipped'));

DROP INDEX weft_tasks_unique_key;
CREATE UNIQUE INDEX weft_tasks_unique_key ON weft_tasks (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'blocked', 'running', 'waiting', 'completed');

DROP INDEX weft_tasks_unsuccessful;
CREATE INDEX weft_tasks_unsuccessful ON weft_tasks (state, id)
    WHERE state IN ('blocked', 'waiting', 'failed', 'cancelled', 'skipped');
