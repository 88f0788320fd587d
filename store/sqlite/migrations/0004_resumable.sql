-- Whether a running task may be run again when its owner dies. The claim
-- sets it from the claiming worker's registration; rescue fails a task that
-- may not be resumed instead of retrying it.
ALTER TABLE weft_tasks ADD COLUMN resumable INTEGER NOT NULL DEFAULT 1;
