package store

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPrepareSchedule(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	sc, err := PrepareSchedule(Schedule{Name: "nightly", Spec: "0 3 * * *", Kind: "report"}, Limits{}, now)
	if err != nil {
		t.Fatal(err)
	}
	if sc.Queue != DefaultQueue || sc.MaxAttempts != DefaultMaxAttempts || sc.Missed != MissedSkip || string(sc.Args) != "{}" ||
		!sc.NextAt.Equal(time.Date(2030, 1, 3, 3, 0, 0, 0, time.UTC)) {
		t.Fatalf("prepared = %+v", sc)
	}
	if sc, err := PrepareSchedule(Schedule{Name: "often", Spec: "@every 90s", Kind: "k"}, Limits{}, now); err != nil || !sc.NextAt.Equal(now.Add(90*time.Second)) {
		t.Fatalf("@every 90s = %+v, %v", sc, err)
	}
	for _, tc := range []struct {
		sc         Schedule
		field, msg string
	}{
		{Schedule{Name: "bad name", Spec: "@hourly", Kind: "k"}, "name", "not a valid schedule name"},
		{Schedule{Name: "s", Spec: "every hour", Kind: "k"}, "spec", `"every hour"`},
		{Schedule{Name: "s", Spec: "61 * * * *", Kind: "k"}, "spec", "61"},
		{Schedule{Name: "s", Spec: "@every 0s", Kind: "k"}, "spec", "the shortest is @every 1s"},
		{Schedule{Name: "s", Spec: "@every -5m", Kind: "k"}, "spec", "the shortest is @every 1s"},
		{Schedule{Name: "s", Spec: "@every 500ms", Kind: "k"}, "spec", "the shortest is @every 1s"},
		{Schedule{Name: "s", Spec: "@every soon", Kind: "k"}, "spec", "not a duration"},
		{Schedule{Name: "s", Spec: "@hourly", Kind: "k", Missed: "sometimes"}, "missed", "skip or run_once"},
		{Schedule{Name: "s", Spec: "@hourly"}, "kind", "must not be empty"},
		{Schedule{Name: "s", Spec: "@hourly", Kind: "k", Args: json.RawMessage("{")}, "args", "not valid JSON"},
		{Schedule{Name: "s", Spec: "@hourly", Kind: "k", MaxAttempts: -1}, "max_attempts", "out of range"},
	} {
		_, err := PrepareSchedule(tc.sc, Limits{}, now)
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field || !strings.Contains(ve.Message, tc.msg) || ve.Index != -1 {
			t.Errorf("%+v: %v; want a ValidationError on %s saying %q", tc.sc, err, tc.field, tc.msg)
		}
	}
}
