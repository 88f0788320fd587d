DROP TABLE IF EXISTS weft_counts, weft_schedules, weft_nodes, weft_leaders, weft_events, weft_tasks;
