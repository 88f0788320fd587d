package maintenance

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/weftworks/weft/store"
)

// LimitsName names the reconciler of limit counters; its knob is
// WEFT_LIMITS_INTERVAL.
const LimitsName = "limits"

// The corrections made by every limits reconciler of this process, for
// the metrics (LimitCorrections): counters are process-wide because the
// reconciler runs in whichever client leads, while the metrics are served
// by the HTTP API of the same process.
var (
	limitKeys       atomic.Int64
	limitStaleHolds atomic.Int64
	limitReleased   atomic.Int64
)

// LimitCorrectionCounts are what the limits reconcilers of a process
// corrected since it started.
type LimitCorrectionCounts struct {
	// Keys counts the keys whose counters were found wrong, each time
	// they were.
	Keys int64
	// StaleHolds counts the slots found held by tasks no longer running.
	StaleHolds int64
	// Released counts the waiting tasks made claimable again.
	Released int64
}

// LimitCorrections returns what the limits reconcilers of this process
// corrected since it started.
func LimitCorrections() LimitCorrectionCounts {
	return LimitCorrectionCounts{Keys: limitKeys.Load(), StaleHolds: limitStaleHolds.Load(), Released: limitReleased.Load()}
}

// Limits returns the tick of the limits reconciler: it recomputes the
// limits' counters from the task rows (store.Limiter.ReconcileLimits),
// which correct them. Claims, finishes and rescues keep the counters in
// their own transactions, so a correction means something changed them
// outside those (a manual edit, a bug): it is logged at warn with the
// keys, and counted. Tasks made claimable again, which a missed wakeup
// leaves behind without any counter being wrong, are counted apart.
func Limits(st store.Limiter, log *slog.Logger) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		d, err := st.ReconcileLimits(ctx)
		if err != nil {
			return err
		}
		if len(d.Keys) > 0 || d.StaleHolds > 0 {
			limitKeys.Add(int64(len(d.Keys)))
			limitStaleHolds.Add(int64(d.StaleHolds))
			keys := make([]string, len(d.Keys))
			for i, r := range d.Keys {
				keys[i] = r.Limit + "/" + r.Key
			}
			log.Warn("weft: limit counters had drifted and were corrected", "keys", keys, "stale_holds", d.StaleHolds)
		}
		if d.Released > 0 {
			limitReleased.Add(int64(d.Released))
			log.Info("weft: waiting tasks whose limit keys have room were made claimable", "count", d.Released)
		}
		return nil
	}
}
