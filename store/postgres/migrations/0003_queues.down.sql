DROP TABLE weft_queues;
