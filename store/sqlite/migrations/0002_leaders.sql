-- Leadership of singleton background work (one row per role). A holder
-- keeps its lease by renewing before expires_at; anyone may take an expired
-- one. term increases with every change of holder.
CREATE TABLE weft_leaders (
    name       TEXT    NOT NULL PRIMARY KEY,
    holder     TEXT    NOT NULL,
    term       INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
