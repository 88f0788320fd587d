ALTER TABLE weft_workers DROP COLUMN labels;
ALTER TABLE weft_nodes DROP COLUMN labels;
