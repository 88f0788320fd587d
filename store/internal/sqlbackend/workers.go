package sqlbackend

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/weftworks/weft/store"
)

// The worker registry: nodes with the queues and kinds they serve and
// their labels, and remote workers. Both schemas keep a list of names as a
// JSON array and labels as a JSON object (TEXT on SQLite, JSONB on
// PostgreSQL), NULL when empty.

// NamesJSON encodes a list of queue or kind names for the registry: a JSON
// array, or nil (NULL) when the list is empty.
func NamesJSON(names []string) any {
	if len(names) == 0 {
		return nil
	}
	b, _ := json.Marshal(names) // a []string always encodes
	return string(b)
}

// names decodes a column NamesJSON wrote.
func names(raw []byte) ([]string, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var out []string
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("decode names %q: %w", raw, err)
	}
	return out, nil
}

// LabelsJSON checks a worker's labels (store.CheckLabels) and encodes
// them for the registry: a JSON object, or nil (NULL) when there are none.
func LabelsJSON(labels map[string]string) (any, error) {
	if err := store.CheckLabels(labels); err != nil {
		return nil, err
	}
	if len(labels) == 0 {
		return nil, nil
	}
	b, _ := json.Marshal(labels) // a map[string]string always encodes
	return string(b), nil
}

// decodeLabels decodes a column LabelsJSON wrote.
func decodeLabels(raw []byte) (map[string]string, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var out map[string]string
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("decode labels %q: %w", raw, err)
	}
	return out, nil
}

// CheckWorker refuses, before anything is written, a remote worker
// without an id, or with names no task could have.
func CheckWorker(w store.RemoteWorker) error {
	if w.ID == "" {
		return &store.ValidationError{Index: -1, Field: "worker id", Message: "must not be empty"}
	}
	if len(w.Queues) == 0 {
		return &store.ValidationError{Index: -1, Field: "queues", Message: "must name at least one queue"}
	}
	return checkNames(w.Queues, w.Kinds)
}

// checkNames refuses queue and kind names no task could have.
func checkNames(queues, kinds []string) error {
	for _, list := range []struct {
		field string
		names []string
	}{{"queues", queues}, {"kinds", kinds}} {
		for i, n := range list.names {
			if !store.ValidName(n) {
				return &store.ValidationError{Index: -1, Field: fmt.Sprintf("%s[%d]", list.field, i), Message: fmt.Sprintf("%q is not a valid name", n)}
			}
		}
	}
	return nil
}

// running counts the running tasks of the registry row's id, through the
// index on the running tasks' lease owners.
const running = "(SELECT count(*) FROM weft_tasks WHERE lease_owner = r.id AND state = 'running')"

// Nodes implements store.Store.
func (r Reader) Nodes(ctx context.Context) ([]store.Node, error) {
	return collect(ctx, r.db, "nodes", "SELECT id, host, pid, started_at, heartbeat_at, queues, kinds, labels, "+running+" FROM weft_nodes r ORDER BY id", nil, func(row Rows) (store.Node, error) {
		var (
			n                     store.Node
			start, hb             int64
			queues, kinds, labels []byte
		)
		if err := row.Scan(&n.ID, &n.Host, &n.PID, &start, &hb, &queues, &kinds, &labels, &n.Running); err != nil {
			return n, err
		}
		n.StartedAt, n.HeartbeatAt = FromMicros(start), FromMicros(hb)
		var err error
		if n.Queues, err = names(queues); err != nil {
			return n, err
		}
		if n.Kinds, err = names(kinds); err != nil {
			return n, err
		}
		n.Labels, err = decodeLabels(labels)
		return n, err
	})
}

// RemoteWorkers implements store.Store.
func (r Reader) RemoteWorkers(ctx context.Context) ([]store.RemoteWorker, error) {
	return collect(ctx, r.db, "remote workers", "SELECT id, host, queues, kinds, labels, first_seen_at, last_seen_at, "+running+" FROM weft_workers r ORDER BY id", nil, func(row Rows) (store.RemoteWorker, error) {
		var (
			w                     store.RemoteWorker
			first, last           int64
			queues, kinds, labels []byte
		)
		if err := row.Scan(&w.ID, &w.Host, &queues, &kinds, &labels, &first, &last, &w.Running); err != nil {
			return w, err
		}
		w.FirstSeenAt, w.LastSeenAt = FromMicros(first), FromMicros(last)
		var err error
		if w.Queues, err = names(queues); err != nil {
			return w, err
		}
		if w.Kinds, err = names(kinds); err != nil {
			return w, err
		}
		w.Labels, err = decodeLabels(labels)
		return w, err
	})
}
