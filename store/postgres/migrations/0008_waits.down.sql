-- Refused while any task waits: the tasks would lose their waits.
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM weft_tasks WHERE state = 'waiting') THEN
        RAISE EXCEPTION 'tasks are waiting on signals: resume or cancel them first';
    END IF;
END $$;
DROP TABLE weft_signing_keys;
DROP TABLE weft_signals;
DROP TABLE weft_waitpoints;
DROP INDEX weft_tasks_wait_until;
ALTER TABLE weft_tasks DROP COLUMN wait_until;
ALTER TABLE weft_tasks DROP COLUMN wait_spec;
