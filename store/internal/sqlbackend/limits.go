package sqlbackend

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weftworks/weft/store"
)

// Limits are written once, here, for both backends, in the flows'
// dialect. The counters a claim consults are the keys' rows
// (weft_limit_keys: the rate's timestamp, the tasks set aside) and the
// slots held (weft_limit_holds), which count only while their task is
// running: a slot can never leak, whatever path ended the run. The
// decisions are store's (store.Admit); this file reads what they need,
// under the claim's lock, and writes what they decide.

// limitSpec is a Limit as weft_limits.spec stores it.
type limitSpec struct {
	Concurrency int            `json:"concurrency,omitempty"`
	Overrides   map[string]int `json:"overrides,omitempty"`
	Rate        int            `json:"rate,omitempty"`
	PeriodUS    int64          `json:"period_us,omitempty"`
	Burst       int            `json:"burst,omitempty"`
	OnLimit     store.OnLimit  `json:"on_limit,omitempty"`
}

func specOf(l store.Limit) string {
	b, _ := json.Marshal(limitSpec{Concurrency: l.Concurrency, Overrides: l.Overrides, Rate: l.Rate,
		PeriodUS: l.Period.Microseconds(), Burst: l.Burst, OnLimit: l.OnLimit})
	return string(b)
}

func limitOf(name, spec string, created, updated int64) (store.Limit, error) {
	var s limitSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		return store.Limit{}, fmt.Errorf("limit %q: decode: %w", name, err)
	}
	return store.Limit{Name: name, Concurrency: s.Concurrency, Overrides: s.Overrides, Rate: s.Rate,
		Period: time.Duration(s.PeriodUS) * time.Microsecond, Burst: s.Burst, OnLimit: s.OnLimit,
		CreatedAt: FromMicros(created), UpdatedAt: FromMicros(updated)}, nil
}

// keyRange bounds the ids (store.LimitRef.ID) of a limit's keys.
func keyRange(name string) (from, to string) {
	return name + "\x1f", name + "\x20"
}

// SetLimit creates or replaces a limit; the tasks set aside for its keys
// are reconsidered at the next claim.
func (f FlowStore) SetLimit(ctx context.Context, tx Tx, l store.Limit, now time.Time) (store.Limit, error) {
	l, err := store.PrepareLimit(l)
	if err != nil {
		return store.Limit{}, err
	}
	nowUS := Micros(now)
	if _, err := f.exec(ctx, tx, `INSERT INTO weft_limits (name, spec, created_at, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at`,
		l.Name, specOf(l), nowUS, nowUS); err != nil {
		return store.Limit{}, fmt.Errorf("set limit: %w", err)
	}
	if _, err := f.exec(ctx, tx, `UPDATE weft_limit_keys SET ready_at = ? WHERE name = ? AND parked > 0`, nowUS, l.Name); err != nil {
		return store.Limit{}, fmt.Errorf("set limit: %w", err)
	}
	var created int64
	if err := f.queryRow(ctx, tx, `SELECT created_at FROM weft_limits WHERE name = ?`, l.Name).Scan(&created); err != nil {
		return store.Limit{}, fmt.Errorf("set limit: %w", err)
	}
	l.CreatedAt, l.UpdatedAt = FromMicros(created), FromMicros(nowUS)
	return l, nil
}

// readLimits reads the named limits; names not defined are absent.
func (f FlowStore) readLimits(ctx context.Context, db Querier, names []string) (map[string]store.Limit, error) {
	out := make(map[string]store.Limit, len(names))
	if len(names) == 0 {
		return out, nil
	}
	rows, err := f.query(ctx, db, `SELECT name, spec, created_at, updated_at FROM weft_limits WHERE name IN `+in(len(names)), anys(names)...)
	if err != nil {
		return nil, fmt.Errorf("read limits: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			name, spec       string
			created, updated int64
		)
		if err := rows.Scan(&name, &spec, &created, &updated); err != nil {
			return nil, fmt.Errorf("read limits: %w", err)
		}
		l, err := limitOf(name, spec, created, updated)
		if err != nil {
			return nil, err
		}
		out[name] = l
	}
	return out, rows.Err()
}

// GetLimit returns a limit with its totals.
func (f FlowStore) GetLimit(ctx context.Context, db Querier, name string) (store.LimitInfo, error) {
	ls, err := f.readLimits(ctx, db, []string{name})
	if err != nil {
		return store.LimitInfo{}, err
	}
	l, ok := ls[name]
	if !ok {
		return store.LimitInfo{}, fmt.Errorf("limit %q: %w", name, store.ErrLimitNotFound)
	}
	return f.limitInfo(ctx, db, l)
}

func (f FlowStore) limitInfo(ctx context.Context, db Querier, l store.Limit) (store.LimitInfo, error) {
	info := store.LimitInfo{Limit: l}
	from, to := keyRange(l.Name)
	if err := f.queryRow(ctx, db, `SELECT count(*) FROM weft_limit_holds h JOIN weft_tasks t ON t.id = h.task_id AND t.state = 'running'
		WHERE h.id >= ? AND h.id < ?`, from, to).Scan(&info.InUse); err != nil {
		return info, fmt.Errorf("limit %q: %w", l.Name, err)
	}
	if err := f.queryRow(ctx, db, `SELECT coalesce(sum(parked), 0), count(*) FROM weft_limit_keys WHERE name = ?`, l.Name).
		Scan(&info.Waiting, &info.Keys); err != nil {
		return info, fmt.Errorf("limit %q: %w", l.Name, err)
	}
	return info, nil
}

// ListLimits returns every limit with its totals, by name.
func (f FlowStore) ListLimits(ctx context.Context, db Querier) ([]store.LimitInfo, error) {
	rows, err := f.query(ctx, db, `SELECT name FROM weft_limits ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list limits: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list limits: %w", err)
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list limits: %w", err)
	}
	ls, err := f.readLimits(ctx, db, names)
	if err != nil {
		return nil, err
	}
	out := make([]store.LimitInfo, 0, len(names))
	for _, n := range names {
		l, ok := ls[n]
		if !ok {
			continue // deleted between the two reads
		}
		info, err := f.limitInfo(ctx, db, l)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// LimitKeyStates returns a page of a limit's keys, those with the most
// tasks waiting first.
func (f FlowStore) LimitKeyStates(ctx context.Context, db Querier, name, cursor string, limit int, now time.Time) ([]store.LimitKeyState, string, error) {
	info, err := f.GetLimit(ctx, db, name)
	if err != nil {
		return nil, "", err
	}
	l := info.Limit
	where, args := `name = ?`, []any{name}
	if cursor != "" {
		n, id, ok := strings.Cut(cursor, ":")
		parked, err := strconv.Atoi(n)
		if !ok || err != nil {
			return nil, "", &store.ValidationError{Index: -1, Field: "cursor", Message: "malformed: pass back the next_cursor of the previous page"}
		}
		where += ` AND (parked < ? OR (parked = ? AND id > ?))`
		args = append(args, parked, parked, name+"\x1f"+id)
	}
	args = append(args, limit+1)
	rows, err := f.query(ctx, db, `SELECT id, key, tat, parked FROM weft_limit_keys WHERE `+where+` ORDER BY parked DESC, id LIMIT ?`, args...)
	if err != nil {
		return nil, "", fmt.Errorf("limit keys: %w", err)
	}
	var (
		out []store.LimitKeyState
		ids []string
	)
	nowUS := Micros(now)
	for rows.Next() {
		var (
			id, key     string
			tat         int64
			parked      int
			nextAllowed time.Time
		)
		if err := rows.Scan(&id, &key, &tat, &parked); err != nil {
			rows.Close()
			return nil, "", fmt.Errorf("limit keys: %w", err)
		}
		nextAllowed = store.NextAllowed(l, tat, nowUS)
		out = append(out, store.LimitKeyState{Key: key, Cap: l.Cap(key), Waiting: parked, NextAllowedAt: nextAllowed})
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("limit keys: %w", err)
	}
	next := ""
	if len(out) > limit {
		out, ids = out[:limit], ids[:limit]
		last := out[limit-1]
		next = strconv.Itoa(last.Waiting) + ":" + last.Key
	}
	inUse, err := f.inUse(ctx, db, ids)
	if err != nil {
		return nil, "", err
	}
	for i := range out {
		out[i].InUse = inUse[ids[i]]
	}
	return out, next, nil
}

// inUse counts the slots held by running tasks on each key id.
func (f FlowStore) inUse(ctx context.Context, db Querier, ids []string) (map[string]int, error) {
	out := make(map[string]int, len(ids))
	err := chunks(ids, func(part []string) error {
		rows, err := f.query(ctx, db, `SELECT h.id, count(*) FROM weft_limit_holds h
			JOIN weft_tasks t ON t.id = h.task_id AND t.state = 'running'
			WHERE h.id IN `+in(len(part))+` GROUP BY h.id`, anys(part)...)
		if err != nil {
			return fmt.Errorf("limit slots: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var (
				id string
				n  int
			)
			if err := rows.Scan(&id, &n); err != nil {
				return fmt.Errorf("limit slots: %w", err)
			}
			out[id] = n
		}
		return rows.Err()
	})
	return out, err
}

// DeleteLimit removes a limit, its keys' counters and its slots; the
// tasks set aside for it become claimable.
func (f FlowStore) DeleteLimit(ctx context.Context, tx Tx, name string) error {
	n, err := f.exec(ctx, tx, `DELETE FROM weft_limits WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete limit: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("limit %q: %w", name, store.ErrLimitNotFound)
	}
	from, to := keyRange(name)
	for _, q := range []string{
		`DELETE FROM weft_limit_keys WHERE name = ?`,
		`DELETE FROM weft_limit_holds WHERE id >= ? AND id < ?`,
		`UPDATE weft_tasks SET parked_on = NULL, blocked_reason = NULL
			WHERE id IN (SELECT task_id FROM weft_limit_parked WHERE id >= ? AND id < ?) AND state = 'pending'`,
		`DELETE FROM weft_limit_parked WHERE id >= ? AND id < ?`,
		`DELETE FROM weft_limit_latest WHERE id >= ? AND id < ?`,
	} {
		a := []any{from, to}
		if strings.Contains(q, "name = ?") {
			a = []any{name}
		}
		if _, err := f.exec(ctx, tx, q, a...); err != nil {
			return fmt.Errorf("delete limit: %w", err)
		}
	}
	return nil
}

// SetFairness sets the weights of a queue's fairness keys; 0 puts a key
// back to the default, 1.
func (f FlowStore) SetFairness(ctx context.Context, tx Tx, queue string, weights map[string]int) error {
	if err := CheckQueueName(queue); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(weights)) {
		w := weights[k]
		if k == "" || len(k) > store.MaxLimitKeyLength {
			return &store.ValidationError{Index: -1, Field: "weights", Message: fmt.Sprintf("key %q: must be 1 to %d bytes", k, store.MaxLimitKeyLength)}
		}
		if w < 0 || w > 10000 {
			return &store.ValidationError{Index: -1, Field: "weights", Message: fmt.Sprintf("key %q: weight %d is out of range (1 to 10000; 0 means the default, 1)", k, w)}
		}
		if w == 0 {
			w = 1
		}
		if _, err := f.exec(ctx, tx, `INSERT INTO weft_fair_keys (queue, key, weight) VALUES (?, ?, ?)
			ON CONFLICT (queue, key) DO UPDATE SET weight = excluded.weight`, queue, k, w); err != nil {
			return fmt.Errorf("set fairness: %w", err)
		}
	}
	return nil
}

// Fairness returns a queue's weights other than the default.
func (f FlowStore) Fairness(ctx context.Context, db Querier, queue string) (map[string]int, error) {
	rows, err := f.query(ctx, db, `SELECT key, weight FROM weft_fair_keys WHERE queue = ? AND weight <> 1 ORDER BY key`, queue)
	if err != nil {
		return nil, fmt.Errorf("fairness: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var (
			k string
			w int
		)
		if err := rows.Scan(&k, &w); err != nil {
			return nil, fmt.Errorf("fairness: %w", err)
		}
		out[k] = w
	}
	return out, rows.Err()
}

// ScanBlocked decodes a task's blocked_reason column.
func ScanBlocked(s sql.NullString) *store.BlockedReason {
	if !s.Valid || s.String == "" {
		return nil
	}
	var r store.BlockedReason
	if json.Unmarshal([]byte(s.String), &r) != nil {
		return nil
	}
	return &r
}

// ScanGate decodes a task's gate column onto t.
func ScanGate(s sql.NullString, t *store.Task) error {
	if !s.Valid || s.String == "" {
		return nil
	}
	var g store.Gate
	if err := json.Unmarshal([]byte(s.String), &g); err != nil {
		return fmt.Errorf("task %s: decode gate: %w", t.ID, err)
	}
	g.Apply(t)
	return nil
}
