package postgres

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// Stream notifications carry task ids in payloads under PostgreSQL's
// bound, every id once.
func TestNotifyPayloads(t *testing.T) {
	var ids []string
	for i := range 1000 {
		ids = append(ids, fmt.Sprintf("01a2091c-0000-7000-8000-%012d", i))
	}
	payloads := notifyPayloads(ids)
	if len(payloads) < 2 {
		t.Fatalf("1,000 ids in %d payloads", len(payloads))
	}
	var back []string
	for _, p := range payloads {
		if len(p) > maxNotifyPayload {
			t.Fatalf("a payload of %d bytes", len(p))
		}
		back = append(back, strings.Split(p, ",")...)
	}
	if !slices.Equal(back, ids) {
		t.Fatalf("payloads carry %d ids, not the 1,000 given in order", len(back))
	}
	if got := notifyPayloads(nil); len(got) != 0 {
		t.Fatalf("no ids: %q", got)
	}
}
