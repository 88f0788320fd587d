DROP TABLE weft_workers;
ALTER TABLE weft_nodes DROP COLUMN queues;
ALTER TABLE weft_nodes DROP COLUMN kinds;
