-- Removes output streams; tasks keep everything else.
DROP TABLE weft_streams;
DROP TABLE weft_frames;
