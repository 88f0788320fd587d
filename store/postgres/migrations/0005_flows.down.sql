-- Removes flows, and every member task with them: plain tasks are kept.
INSERT INTO weft_count_deltas (queue, state, n)
    SELECT queue, state, -count(*) FROM weft_tasks WHERE flow_id IS NOT NULL GROUP BY queue, state;
DELETE FROM weft_events WHERE task_id IN (SELECT id FROM weft_tasks WHERE flow_id IS NOT NULL);
DELETE FROM weft_tasks WHERE flow_id IS NOT NULL;
DROP TABLE weft_flow_edges;
DROP TABLE weft_flow_members;
DROP TABLE weft_flows;
DROP INDEX weft_tasks_flow;
ALTER TABLE weft_tasks DROP COLUMN flow_key;
ALTER TABLE weft_tasks DROP COLUMN flow_id;
