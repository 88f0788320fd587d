-- Nodes (processes running Weft clients) and their liveness. A node
-- refreshes heartbeat_at while it runs and deletes its row when it stops;
-- a row whose heartbeat is older than the node TTL belongs to a dead node.
CREATE TABLE weft_nodes (
    id           TEXT    NOT NULL PRIMARY KEY,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);
