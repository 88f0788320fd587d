package postgres

import (
	"context"
	"fmt"
	"sync"

	"github.com/weftworks/weft/store"
)

// Events across tasks, in commit order.
//
// An event's seq comes from a sequence when its row is inserted, not when
// its transaction commits: a transaction that took seq 103 may commit
// after one that took 105. A reader that returned 105 and moved its
// cursor there would never see 103. So EventsAfter returns only settled
// events: those whose seq is at most a bound below which every
// transaction that took a seq has ended.
//
// The bound comes from samples. A sample reads the sequence's last value
// L, then a snapshot, whose xmax is above the id of every transaction
// that had one when L was read. Every transaction that writes events has
// an id before it takes its first seq (each insert of events follows the
// transaction's write of the task, or, for progress, asks for the id
// first), so the transactions holding seqs up to L are all below that
// xmax. Once a later snapshot's xmin reaches it, they have all ended, and
// L is settled. An idle database settles each sample at once; a busy one
// settles it as soon as the transactions running at the sample end —
// a statement or two later.

// maxHorizonSamples bounds the samples kept while transactions stay open
// (one that never ends holds the bound back until it does).
const maxHorizonSamples = 64

// eventHorizon is the settled bound and the samples not settled yet.
type eventHorizon struct {
	mu      sync.Mutex
	settled int64
	samples []horizonSample
}

// horizonSample is the sequence's last value L and the xmax of a snapshot
// taken after L was read.
type horizonSample struct {
	last int64
	xmax int64
}

// settledSeq takes a sample and returns the highest seq known settled.
func (s *Store) settledSeq(ctx context.Context) (int64, error) {
	var last int64
	// The sequence is read first, in a statement of its own: the
	// snapshot below must be taken after it.
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('weft_events', 'seq')::regclass), 0)`).Scan(&last); err != nil {
		return 0, fmt.Errorf("read events: last seq: %w", err)
	}
	var xmin, xmax int64
	if err := s.pool.QueryRow(ctx, `SELECT pg_snapshot_xmin(c)::text::bigint, pg_snapshot_xmax(c)::text::bigint
		FROM pg_current_snapshot() AS c`).Scan(&xmin, &xmax); err != nil {
		return 0, fmt.Errorf("read events: snapshot: %w", err)
	}
	h := &s.horizon
	h.mu.Lock()
	defer h.mu.Unlock()
	h.samples = append(h.samples, horizonSample{last: last, xmax: xmax})
	kept := h.samples[:0]
	for _, sm := range h.samples {
		if sm.xmax <= xmin {
			h.settled = max(h.settled, sm.last)
		} else {
			kept = append(kept, sm)
		}
	}
	if len(kept) > maxHorizonSamples {
		// Keep the oldest (the next to settle) and the newest.
		kept = append(kept[:maxHorizonSamples/2], kept[len(kept)-maxHorizonSamples/2:]...)
	}
	h.samples = kept
	return h.settled, nil
}

// EventsAfter implements store.Store: it reads no event above the
// settled bound.
func (s *Store) EventsAfter(ctx context.Context, f store.EventFilter) (store.EventPage, error) {
	settled, err := s.settledSeq(ctx)
	if err != nil {
		return store.EventPage{}, classify(err)
	}
	return s.reads.EventsAfter(ctx, f, settled)
}
