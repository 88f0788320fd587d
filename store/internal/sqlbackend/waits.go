package sqlbackend

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/weftworks/weft/store"
)

// Waits are written once, here, for both backends, like flows: plain SQL
// in the backend's Dialect, run in its transaction.

// waitpointColumns are what a waitpoint read selects, in scanWaitpoint's
// order.
const waitpointColumns = `id, task_id, name, allow, expires_at, state, resolution, created_at, resolved_at`

func scanWaitpoint(r Row) (store.Waitpoint, error) {
	var (
		wp                store.Waitpoint
		allow             []byte
		expires, resolved sql.NullInt64
		state             string
		resolution        sql.NullString
		created           int64
	)
	if err := r.Scan(&wp.ID, &wp.TaskID, &wp.Name, &allow, &expires, &state, &resolution, &created, &resolved); err != nil {
		return wp, err
	}
	if len(allow) > 0 {
		if err := json.Unmarshal(allow, &wp.Allow); err != nil {
			return wp, fmt.Errorf("waitpoint %s: decode allowed names: %w", wp.ID, err)
		}
	}
	wp.State, wp.Resolution, wp.CreatedAt = store.WaitpointState(state), resolution.String, FromMicros(created)
	if expires.Valid {
		wp.ExpiresAt = FromMicros(expires.Int64)
	}
	if resolved.Valid {
		wp.ResolvedAt = FromMicros(resolved.Int64)
	}
	return wp, nil
}

// signalColumns are what a signal read selects, in scanSignal's order.
const signalColumns = `s.id, s.waitpoint_id, w.name, s.name, s.payload, s.key, s.source, s.received_at`

func scanSignal(r Rows) (store.Signal, error) {
	var (
		s        store.Signal
		payload  []byte
		source   sql.NullString
		received int64
	)
	if err := r.Scan(&s.ID, &s.WaitpointID, &s.Waitpoint, &s.Name, &payload, &s.Key, &source, &received); err != nil {
		return s, err
	}
	if len(payload) > 0 {
		s.Payload = json.RawMessage(payload)
	}
	s.Source, s.ReceivedAt = source.String, FromMicros(received)
	return s, nil
}

// waitTask is a task as a wait's transition reads it, locked.
type waitTask struct {
	id, queue, flowID string
	state             store.State
	attempt           int
	epoch             int64
	cancelRequested   bool
	spec              *store.WaitSpec
}

func (f FlowStore) lockWaitTask(ctx context.Context, tx Tx, taskID string) (waitTask, error) {
	var (
		t      waitTask
		state  string
		flowID sql.NullString
		spec   []byte
	)
	err := f.queryRow(ctx, tx, `SELECT id, queue, flow_id, state, attempt, lease_epoch, cancel_requested, wait_spec
		FROM weft_tasks WHERE id = ?`+f.d.lockSuffix(), taskID).
		Scan(&t.id, &t.queue, &flowID, &state, &t.attempt, &t.epoch, &t.cancelRequested, &spec)
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("task %s: %w", taskID, store.ErrNotFound)
	}
	if err != nil {
		return t, err
	}
	t.state, t.flowID = store.State(state), flowID.String
	if len(spec) > 0 {
		t.spec = &store.WaitSpec{}
		if err := json.Unmarshal(spec, t.spec); err != nil {
			return t, fmt.Errorf("task %s: decode its wait: %w", taskID, err)
		}
	}
	return t, nil
}

// CreateWaitpoint creates a waitpoint for a running task under its lease
// epoch, or returns the one of that name the task has.
func (f FlowStore) CreateWaitpoint(ctx context.Context, tx Tx, taskID string, epoch int64, wp store.NewWaitpoint, now time.Time) (store.Waitpoint, error) {
	t, err := f.lockWaitTask(ctx, tx, taskID)
	if err != nil {
		return store.Waitpoint{}, err
	}
	if t.state != store.StateRunning || t.epoch != epoch {
		return store.Waitpoint{}, fmt.Errorf("task %s epoch %d: %w", taskID, epoch, store.ErrLeaseLost)
	}
	existing, err := f.Waitpoints(ctx, tx, taskID)
	if err != nil {
		return store.Waitpoint{}, err
	}
	for _, e := range existing {
		if e.Name == wp.Name {
			return e, nil
		}
	}
	if err := store.CheckWaitpoint(wp, now); err != nil {
		return store.Waitpoint{}, err
	}
	if len(existing) >= store.MaxWaitpointsPerTask {
		return store.Waitpoint{}, &store.ValidationError{Index: -1, Field: "name", TooLarge: true,
			Message: fmt.Sprintf("task %s already has %d waitpoints, the most one task may have", taskID, store.MaxWaitpointsPerTask)}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return store.Waitpoint{}, fmt.Errorf("waitpoint id: %w", err)
	}
	out := store.Waitpoint{ID: id.String(), TaskID: taskID, Name: wp.Name, Allow: wp.Allow, ExpiresAt: wp.ExpiresAt,
		State: store.WaitpointOpen, CreatedAt: FromMicros(Micros(now))}
	var allow, expires any
	if len(wp.Allow) > 0 {
		b, _ := json.Marshal(wp.Allow)
		allow = string(b)
	}
	if !wp.ExpiresAt.IsZero() {
		expires = Micros(wp.ExpiresAt)
		out.ExpiresAt = FromMicros(Micros(wp.ExpiresAt))
	}
	if _, err := f.exec(ctx, tx, `INSERT INTO weft_waitpoints (id, task_id, name, allow, expires_at, state, created_at)
		VALUES (?, ?, ?, `+f.d.JSON+`, ?, '`+string(store.WaitpointOpen)+`', ?)`,
		out.ID, taskID, wp.Name, allow, expires, Micros(now)); err != nil {
		return store.Waitpoint{}, fmt.Errorf("create waitpoint: %w", err)
	}
	return out, nil
}

// Waitpoints lists a task's waitpoints, oldest first, with their signals.
func (f FlowStore) Waitpoints(ctx context.Context, db Querier, taskID string) ([]store.Waitpoint, error) {
	wps, err := collect(ctx, db, "read waitpoints", f.d.Bind(`SELECT `+waitpointColumns+` FROM weft_waitpoints
		WHERE task_id = ? ORDER BY created_at, id`), []any{taskID}, func(r Rows) (store.Waitpoint, error) { return scanWaitpoint(r) })
	if err != nil || len(wps) == 0 {
		return wps, err
	}
	signals, err := f.taskSignals(ctx, db, taskID)
	if err != nil {
		return nil, err
	}
	for i := range wps {
		for _, s := range signals {
			if s.WaitpointID == wps[i].ID {
				wps[i].Signals = append(wps[i].Signals, s)
			}
		}
	}
	return wps, nil
}

// WaitpointsOf reads the waitpoints, with their signals, of several
// tasks: one statement for the waitpoints, one more for their signals when
// there are any.
func (f FlowStore) WaitpointsOf(ctx context.Context, db Querier, taskIDs []string) (map[string][]store.Waitpoint, error) {
	out := map[string][]store.Waitpoint{}
	err := chunks(taskIDs, func(part []string) error {
		wps, err := collect(ctx, db, "read waitpoints", f.d.Bind(`SELECT `+waitpointColumns+` FROM weft_waitpoints
			WHERE task_id IN `+in(len(part))+` ORDER BY created_at, id`), anys(part), func(r Rows) (store.Waitpoint, error) { return scanWaitpoint(r) })
		if err != nil || len(wps) == 0 {
			return err
		}
		ids := make([]string, len(wps))
		for i, wp := range wps {
			ids[i] = wp.ID
		}
		signals, err := collect(ctx, db, "read signals", f.d.Bind(`SELECT `+signalColumns+` FROM weft_signals s
			JOIN weft_waitpoints w ON w.id = s.waitpoint_id WHERE s.waitpoint_id IN `+in(len(ids))+` ORDER BY s.received_at, s.id`), anys(ids), scanSignal)
		if err != nil {
			return err
		}
		for i := range wps {
			for _, sg := range signals {
				if sg.WaitpointID == wps[i].ID {
					wps[i].Signals = append(wps[i].Signals, sg)
				}
			}
			out[wps[i].TaskID] = append(out[wps[i].TaskID], wps[i])
		}
		return nil
	})
	return out, err
}

func (f FlowStore) taskSignals(ctx context.Context, db Querier, taskID string) ([]store.Signal, error) {
	return collect(ctx, db, "read signals", f.d.Bind(`SELECT `+signalColumns+` FROM weft_signals s
		JOIN weft_waitpoints w ON w.id = s.waitpoint_id WHERE s.task_id = ? ORDER BY s.received_at, s.id`), []any{taskID}, scanSignal)
}

// Waitpoint reads one waitpoint, without its signals.
func (f FlowStore) Waitpoint(ctx context.Context, db Querier, id string) (store.Waitpoint, error) {
	wp, err := scanWaitpoint(f.queryRow(ctx, db, `SELECT `+waitpointColumns+` FROM weft_waitpoints WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return wp, fmt.Errorf("waitpoint %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return wp, fmt.Errorf("read waitpoint %s: %w", id, err)
	}
	return wp, nil
}

// Suspend applies waiting outcomes in tx: each task, if still running
// under the outcome's epoch, waits on its waitpoints — or resumes at once
// when signals that arrived before already satisfy the wait, ends
// cancelled when its cancellation was requested, or fails when the wait
// names waitpoints it does not have. The attempt is given back.
func (f FlowStore) Suspend(ctx context.Context, tx Tx, outcomes []store.Outcome, now time.Time) ([]store.FinishResult, store.Change, []Finished, error) {
	var ch store.Change
	var finished []Finished
	results := make([]store.FinishResult, len(outcomes))
	nowUS := Micros(now)
	for i, o := range outcomes {
		t, err := f.lockWaitTask(ctx, tx, o.TaskID)
		if errors.Is(err, store.ErrNotFound) {
			results[i].Err = err
			continue
		}
		if err != nil {
			return nil, ch, nil, fmt.Errorf("suspend: %w", err)
		}
		if t.state != store.StateRunning || t.epoch != o.Epoch {
			results[i].Err = fmt.Errorf("task %s epoch %d: %w", o.TaskID, o.Epoch, store.ErrLeaseLost)
			continue
		}
		attempt := t.attempt - 1
		if !o.StartedAt.IsZero() {
			ch.Events = append(ch.Events, store.EventRecord{TaskID: t.id, Type: store.EventStarted, Attempt: t.attempt, At: o.StartedAt})
			if _, err := f.exec(ctx, tx, `UPDATE weft_tasks SET attempted_at = ? WHERE id = ?`, Micros(o.StartedAt), t.id); err != nil {
				return nil, ch, nil, fmt.Errorf("suspend: %w", err)
			}
		}
		if t.cancelRequested {
			// A cancel request wins over a suspension, as over a retry.
			if _, err := f.exec(ctx, tx, `UPDATE weft_tasks SET state = '`+string(store.StateCancelled)+`', finalized_at = ?,
				lease_expires_at = NULL WHERE id = ?`, nowUS, t.id); err != nil {
				return nil, ch, nil, fmt.Errorf("suspend: %w", err)
			}
			ch.Event(t.id, store.EventCancelled, t.attempt, nil)
			ch.Move(t.queue, store.StateRunning, store.StateCancelled)
			results[i].State = store.StateCancelled
			if t.flowID != "" {
				finished = append(finished, Finished{TaskID: t.id, FlowID: t.flowID, From: store.StateRunning, State: store.StateCancelled})
			}
			continue
		}
		spec := *o.Wait
		wps, err := f.Waitpoints(ctx, tx, t.id)
		if err != nil {
			return nil, ch, nil, err
		}
		known := map[string]bool{}
		var signals []store.Signal
		for _, wp := range wps {
			known[wp.Name] = wp.State == store.WaitpointOpen
			signals = append(signals, wp.Signals...)
		}
		if verr := spec.Check(known); verr != nil {
			// The handler asked for a wait that cannot be: a programming
			// error, recorded where its author will look.
			e := store.AttemptError{Attempt: t.attempt, At: now.UTC(), Error: verr.Error()}
			b, _ := json.Marshal(e)
			if _, err := f.exec(ctx, tx, `UPDATE weft_tasks SET state = '`+string(store.StateFailed)+`', finalized_at = ?,
				lease_expires_at = NULL, errors = `+f.d.AppendError+` WHERE id = ?`, nowUS, string(b), t.id); err != nil {
				return nil, ch, nil, fmt.Errorf("suspend: %w", err)
			}
			ch.Event(t.id, store.EventFailed, t.attempt, mustJSON(map[string]string{"error": verr.Error(), "reason": "invalid_wait"}))
			ch.Move(t.queue, store.StateRunning, store.StateFailed)
			results[i].State = store.StateFailed
			if t.flowID != "" {
				finished = append(finished, Finished{TaskID: t.id, FlowID: t.flowID, From: store.StateRunning, State: store.StateFailed})
			}
			continue
		}
		specJSON, _ := json.Marshal(spec)
		ch.Event(t.id, store.EventWaiting, t.attempt, specJSON)
		if spec.Holds(signals) {
			// Signals that came before the suspension are kept: the wait
			// is already over.
			if err := f.resume(ctx, tx, t, spec, attempt, nowUS, store.ResolvedBySignal, &ch); err != nil {
				return nil, ch, nil, err
			}
			ch.Move(t.queue, store.StateRunning, store.StatePending)
			results[i].State = store.StatePending
			continue
		}
		var until any
		if spec.Timeout > 0 {
			until = Micros(now.Add(spec.Timeout))
		}
		if _, err := f.exec(ctx, tx, `UPDATE weft_tasks SET state = '`+string(store.StateWaiting)+`', attempt = ?,
			lease_owner = NULL, lease_expires_at = NULL, wait_spec = `+f.d.JSON+`, wait_until = ? WHERE id = ?`,
			attempt, string(specJSON), until, t.id); err != nil {
			return nil, ch, nil, fmt.Errorf("suspend: %w", err)
		}
		ch.Move(t.queue, store.StateRunning, store.StateWaiting)
		results[i].State = store.StateWaiting
	}
	// Whatever each run ended in, it holds no slot any more.
	var ended []string
	for i, o := range outcomes {
		if results[i].Err == nil {
			ended = append(ended, o.TaskID)
		}
	}
	woke, err := f.Release(ctx, tx, ended, nil, nowUS)
	if err != nil {
		return nil, ch, nil, err
	}
	ch.Wake = ch.Wake || woke
	return results, ch, finished, nil
}

// resume makes a task pending, ready now, its wait's waitpoints resolved
// as how says, with a resumed event.
func (f FlowStore) resume(ctx context.Context, tx Tx, t waitTask, spec store.WaitSpec, attempt int, nowUS int64, how string, ch *store.Change) error {
	if _, err := f.exec(ctx, tx, `UPDATE weft_tasks SET state = '`+string(store.StatePending)+`', attempt = ?, run_at = ?,
		lease_owner = NULL, lease_expires_at = NULL, wait_spec = NULL, wait_until = NULL WHERE id = ?`, attempt, nowUS, t.id); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	if err := f.resolveWaitpoints(ctx, tx, t.id, spec.Waitpoints, how, nowUS); err != nil {
		return err
	}
	ch.Event(t.id, store.EventResumed, attempt, mustJSON(map[string]string{"by": how}))
	return nil
}

func (f FlowStore) resolveWaitpoints(ctx context.Context, tx Tx, taskID string, names []string, how string, nowUS int64) error {
	args := append([]any{how, nowUS, taskID}, anys(names)...)
	if _, err := f.exec(ctx, tx, `UPDATE weft_waitpoints SET state = '`+string(store.WaitpointResolved)+`', resolution = ?, resolved_at = ?
		WHERE task_id = ? AND state = '`+string(store.WaitpointOpen)+`' AND name IN `+in(len(names)), args...); err != nil {
		return fmt.Errorf("resolve waitpoints: %w", err)
	}
	return nil
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("sqlbackend: encode event data: %v", err))
	}
	return b
}

// Signal stores a signal in tx and resumes its task when the signal
// completes the task's wait.
func (f FlowStore) Signal(ctx context.Context, tx Tx, r store.SignalRequest, limits store.Limits, now time.Time) (store.SignalReceipt, store.Change, error) {
	var ch store.Change
	if err := store.CheckSignal(&r, limits); err != nil {
		return store.SignalReceipt{}, ch, err
	}
	var wp store.Waitpoint
	var err error
	if r.WaitpointID != "" {
		wp, err = scanWaitpoint(f.queryRow(ctx, tx, `SELECT `+waitpointColumns+` FROM weft_waitpoints WHERE id = ?`+f.d.lockSuffix(), r.WaitpointID))
	} else {
		wp, err = scanWaitpoint(f.queryRow(ctx, tx, `SELECT `+waitpointColumns+` FROM weft_waitpoints WHERE task_id = ? AND name = ?`+f.d.lockSuffix(), r.TaskID, r.Waitpoint))
	}
	if errors.Is(err, sql.ErrNoRows) {
		return store.SignalReceipt{}, ch, fmt.Errorf("no such waitpoint: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.SignalReceipt{}, ch, fmt.Errorf("signal: %w", err)
	}
	// A repeat is answered with the first receipt, whatever happened since.
	prev, err := collect(ctx, tx, "signal", f.d.Bind(`SELECT `+signalColumns+` FROM weft_signals s
		JOIN weft_waitpoints w ON w.id = s.waitpoint_id WHERE s.waitpoint_id = ? AND s.key = ?`), []any{wp.ID, r.Key}, scanSignal)
	if err != nil {
		return store.SignalReceipt{}, ch, err
	}
	if len(prev) > 0 {
		return store.SignalReceipt{Signal: prev[0], Duplicate: true, TaskID: wp.TaskID}, ch, nil
	}
	t, err := f.lockWaitTask(ctx, tx, wp.TaskID)
	if err != nil {
		return store.SignalReceipt{}, ch, fmt.Errorf("signal: %w", err)
	}
	nowUS := Micros(now)
	switch {
	case t.state.Terminal():
		return store.SignalReceipt{}, ch, fmt.Errorf("waitpoint %s: its task %s is %s: %w", wp.Name, t.id, t.state, store.ErrAlreadyFinished)
	case wp.State != store.WaitpointOpen:
		return store.SignalReceipt{}, ch, fmt.Errorf("waitpoint %s was resolved by %s: %w", wp.Name, wp.Resolution, store.ErrWaitpointClosed)
	case !wp.ExpiresAt.IsZero() && !now.Before(wp.ExpiresAt):
		if err := f.resolveWaitpoints(ctx, tx, t.id, []string{wp.Name}, store.ResolvedByExpiry, nowUS); err != nil {
			return store.SignalReceipt{}, ch, err
		}
		return store.SignalReceipt{}, ch, fmt.Errorf("waitpoint %s expired at %s: %w", wp.Name, wp.ExpiresAt.UTC().Format(time.RFC3339), store.ErrWaitpointClosed)
	case !wp.Allows(r.Name):
		return store.SignalReceipt{}, ch, &store.ValidationError{Index: -1, Field: "name",
			Message: fmt.Sprintf("waitpoint %s takes %v, not %q", wp.Name, wp.Allow, r.Name)}
	}
	var stored int
	if err := f.queryRow(ctx, tx, `SELECT count(*) FROM weft_signals WHERE task_id = ?`, t.id).Scan(&stored); err != nil {
		return store.SignalReceipt{}, ch, fmt.Errorf("signal: %w", err)
	}
	if stored >= store.MaxSignalsPerTask {
		return store.SignalReceipt{}, ch, &store.ValidationError{Index: -1, Field: "name", TooLarge: true,
			Message: fmt.Sprintf("task %s already has %d signals, the most one task may store", t.id, store.MaxSignalsPerTask)}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return store.SignalReceipt{}, ch, fmt.Errorf("signal id: %w", err)
	}
	sig := store.Signal{ID: id.String(), WaitpointID: wp.ID, Waitpoint: wp.Name, Name: r.Name, Payload: r.Payload,
		Key: r.Key, Source: r.Source, ReceivedAt: FromMicros(nowUS)}
	if _, err := f.exec(ctx, tx, `INSERT INTO weft_signals (id, waitpoint_id, task_id, name, payload, key, source, received_at)
		VALUES (?, ?, ?, ?, `+f.d.JSON+`, ?, ?, ?)`, sig.ID, wp.ID, t.id, r.Name, string(r.Payload), r.Key, nullIfEmpty(r.Source), nowUS); err != nil {
		return store.SignalReceipt{}, ch, fmt.Errorf("signal: %w", err)
	}
	ch.Event(t.id, store.EventSignalled, t.attempt, mustJSON(map[string]string{"waitpoint": wp.Name, "signal": r.Name, "id": sig.ID}))
	rec := store.SignalReceipt{Signal: sig, TaskID: t.id}
	if t.state != store.StateWaiting || t.spec == nil {
		return rec, ch, nil
	}
	signals, err := f.taskSignals(ctx, tx, t.id)
	if err != nil {
		return store.SignalReceipt{}, ch, err
	}
	if !t.spec.Holds(signals) {
		return rec, ch, nil
	}
	if err := f.resume(ctx, tx, t, *t.spec, t.attempt, nowUS, store.ResolvedBySignal, &ch); err != nil {
		return store.SignalReceipt{}, ch, err
	}
	ch.Move(t.queue, store.StateWaiting, store.StatePending)
	rec.Resumed = true
	return rec, ch, nil
}

// ExpireWaits ends the waits whose timeout passed by now, at most limit
// of them, as each says; it returns how many, the next timeout due, and
// the flow members it finished, for Resolve.
func (f FlowStore) ExpireWaits(ctx context.Context, tx Tx, limit int, now time.Time) (int, time.Time, store.Change, []Finished, error) {
	var ch store.Change
	nowUS := Micros(now)
	ids, err := collect(ctx, tx, "expire waits", f.d.Bind(`SELECT id FROM weft_tasks WHERE state = '`+string(store.StateWaiting)+`'
		AND wait_until <= ? ORDER BY wait_until, id LIMIT `+fmt.Sprint(limit)+f.d.skipLocked()), []any{nowUS},
		func(r Rows) (string, error) {
			var id string
			return id, r.Scan(&id)
		})
	if err != nil {
		return 0, time.Time{}, ch, nil, err
	}
	var finished []Finished
	n := 0
	for _, id := range ids {
		t, err := f.lockWaitTask(ctx, tx, id)
		if err != nil {
			return 0, time.Time{}, ch, nil, fmt.Errorf("expire waits: %w", err)
		}
		if t.state != store.StateWaiting || t.spec == nil {
			continue
		}
		n++
		data := mustJSON(map[string]any{"reason": "wait_timeout", "timeout": t.spec.Timeout.String(), "waitpoints": t.spec.Waitpoints})
		to := store.StateFailed
		switch t.spec.OnTimeout {
		case store.TimeoutResume:
			if err := f.resume(ctx, tx, t, *t.spec, t.attempt, nowUS, store.ResolvedByTimeout, &ch); err != nil {
				return 0, time.Time{}, ch, nil, err
			}
			ch.Move(t.queue, store.StateWaiting, store.StatePending)
			continue
		case store.TimeoutCancel:
			to = store.StateCancelled
		}
		msg := fmt.Sprintf("the wait on %v timed out after %s", t.spec.Waitpoints, t.spec.Timeout)
		b, _ := json.Marshal(store.AttemptError{Attempt: t.attempt, At: now.UTC(), Error: msg})
		if _, err := f.exec(ctx, tx, `UPDATE weft_tasks SET state = ?, finalized_at = ?, wait_until = NULL, errors = `+f.d.AppendError+`
			WHERE id = ?`, string(to), nowUS, string(b), t.id); err != nil {
			return 0, time.Time{}, ch, nil, fmt.Errorf("expire waits: %w", err)
		}
		if err := f.resolveWaitpoints(ctx, tx, t.id, t.spec.Waitpoints, store.ResolvedByTimeout, nowUS); err != nil {
			return 0, time.Time{}, ch, nil, err
		}
		typ := store.EventFailed
		if to == store.StateCancelled {
			typ = store.EventCancelled
		}
		ch.Event(t.id, typ, t.attempt, data)
		ch.Move(t.queue, store.StateWaiting, to)
		if t.flowID != "" {
			finished = append(finished, Finished{TaskID: t.id, FlowID: t.flowID, From: store.StateWaiting, State: to})
		}
	}
	var next sql.NullInt64
	if err := f.queryRow(ctx, tx, `SELECT min(wait_until) FROM weft_tasks WHERE state = '`+string(store.StateWaiting)+`'
		AND wait_until IS NOT NULL`).Scan(&next); err != nil {
		return 0, time.Time{}, ch, nil, fmt.Errorf("expire waits: %w", err)
	}
	var nextAt time.Time
	if next.Valid {
		nextAt = FromMicros(next.Int64)
	}
	return n, nextAt, ch, finished, nil
}

func (d *Dialect) skipLocked() string {
	if d.Lock == "" {
		return ""
	}
	return " " + d.Lock + " SKIP LOCKED"
}

// signingKID names the signing key a deployment makes for itself.
const signingKID = "db1"

// SigningKey returns the deployment's own signing key, creating it on
// first use; concurrent first uses agree on one.
func (f FlowStore) SigningKey(ctx context.Context, tx Tx, now time.Time) (string, []byte, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", nil, fmt.Errorf("signing key: %w", err)
	}
	if _, err := f.exec(ctx, tx, `INSERT INTO weft_signing_keys (kid, secret, created_at) VALUES (?, ?, ?)
		ON CONFLICT (kid) DO NOTHING`, signingKID, secret, Micros(now)); err != nil {
		return "", nil, fmt.Errorf("signing key: %w", err)
	}
	var stored []byte
	if err := f.queryRow(ctx, tx, `SELECT secret FROM weft_signing_keys WHERE kid = ?`, signingKID).Scan(&stored); err != nil {
		return "", nil, fmt.Errorf("signing key: %w", err)
	}
	return signingKID, stored, nil
}
