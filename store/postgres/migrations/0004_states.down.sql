-- Refused while any task is in a state this version introduced: the old
-- constraint would not hold.
DROP INDEX weft_tasks_unsuccessful;
CREATE INDEX weft_tasks_unsuccessful ON weft_tasks (state, id) WHERE state IN ('failed', 'cancelled');

DROP INDEX weft_tasks_unique_key;
CREATE UNIQUE INDEX weft_tasks_unique_key ON weft_tasks (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'running', 'completed');

ALTER TABLE weft_tasks DROP CONSTRAINT weft_tasks_state_check;
ALTER TABLE weft_tasks ADD CONSTRAINT weft_tasks_state_check
    CHECK (state IN ('pending', 'running', 'completed', 'failed', 'cancelled'));
