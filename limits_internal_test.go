package weft

import (
	"fmt"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/engine"
)

// RateLimited is a snooze that also holds the task's rate limits back,
// however deep the handler wrapped it.
func TestRateLimitedVerdict(t *testing.T) {
	for _, err := range []error{RateLimited(time.Minute), fmt.Errorf("calling the upstream: %w", RateLimited(time.Minute))} {
		v := verdict(err, nil)
		if v.Action != engine.Snooze || v.Delay != time.Minute || !v.RateLimited || v.Err != err {
			t.Errorf("verdict(%v) = %+v", err, v)
		}
	}
	if v := verdict(RateLimited(-time.Second), nil); v.Delay != 0 {
		t.Errorf("a negative delay: %+v", v)
	}
	if v := verdict(Snooze(time.Minute), nil); v.RateLimited {
		t.Errorf("a plain snooze is rate limited: %+v", v)
	}
}
