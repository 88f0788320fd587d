DROP TABLE weft_rollup_cursor;
DROP TABLE weft_rollups;
