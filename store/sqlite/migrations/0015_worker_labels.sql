-- Worker labels (weft.Config.Labels, a remote claim's labels) in the
-- registry: a JSON object of label → value, NULL for none, so that a task
-- whose requirements no live worker satisfies can say so
-- (no_matching_worker).
ALTER TABLE weft_nodes ADD COLUMN labels TEXT;
ALTER TABLE weft_workers ADD COLUMN labels TEXT;
