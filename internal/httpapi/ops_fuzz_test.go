package httpapi

import (
	"context"
	"encoding/json"
	"testing"
)

func FuzzBulk(f *testing.F) {
	for _, s := range []string{
		`{"action": "retry", "filter": {"queue": "q", "states": ["failed"]}}`,
		`{"action": "cancel", "filter": {"kind": "k", "since": "2030-01-02T00:00:00Z", "until": "2030-01-03T00:00:00Z"}, "dry_run": true}`,
		`{"action": "delete", "ids": ["0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e"]}`,
		`{"action": "run_now", "filter": {}}`,
		`{"action": "delete", "filter": {"states": ["pending"]}}`,
		`{"action": "cancel", "filter": {}, "ids": []}`,
		`{"action": "cancel", "ids": ["x"]}`,
		`{"action": "cancel", "filter": {"queue": "q'; DROP TABLE weft_tasks; --"}}`,
		`{"action": "cancel", "filter": {"since": "0000-01-01T00:00:00Z"}}`,
		`{"action": "cancel", "filter": null}`,
		`{"action": "", "filter": {}}`,
		`{"action": "cancel"}{"action": "retry"}`,
		`null`, `[]`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	a := newTestAPI(f, Config{})
	var b struct {
		Tasks []struct{ ID string } `json:"tasks"`
	}
	_, body := a.do(f, "POST", "/v1/tasks", `{"tasks": [{"kind": "k", "queue": "q"}, {"kind": "k", "delay": "1h"}]}`)
	if err := json.Unmarshal(body, &b); err != nil || len(b.Tasks) != 2 {
		f.Fatalf("seed tasks: %s", body)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := snapshot(t, a.st, b.Tasks[0].ID, b.Tasks[1].ID)
		rec := serve(a, "POST", "/v1/tasks/bulk", body)
		checkAnswer(t, rec, body)
		if rec.Code >= 400 && snapshot(t, a.st, b.Tasks[0].ID, b.Tasks[1].ID) != before {
			t.Fatalf("input %q was refused (%d) but wrote", body, rec.Code)
		}
	})
}

func FuzzPutSchedule(f *testing.F) {
	for _, s := range []string{
		`{"spec": "0 3 * * *", "kind": "report", "args": {"scope": "daily"}, "queue": "reports", "missed": "run_once"}`,
		`{"spec": "@every 90s", "kind": "k", "priority": -3, "max_attempts": 2, "metadata": {"team": "ops"}, "paused": true}`,
		`{"spec": "CRON_TZ=Europe/Paris 0 3 * * *", "kind": "k"}`,
		`{"spec": "@every 0s", "kind": "k"}`,
		`{"spec": "@every -1h", "kind": "k"}`,
		`{"spec": "61 * * * *", "kind": "k"}`,
		`{"spec": "CRON_TZ=Nowhere/Else 0 3 * * *", "kind": "k"}`,
		`{"spec": "@daily", "kind": "k", "missed": "always"}`,
		`{"spec": "@daily", "kind": "k", "metadata": []}`,
		`{"spec": "@daily", "kind": "k", "args": "\u0000"}`,
		`{"spec": "@daily"}`,
		`null`, `[]`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	a := newTestAPI(f, Config{})
	schedules := func(t *testing.T) string {
		t.Helper()
		scs, err := a.st.Schedules(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		enc, _ := json.Marshal(scs)
		return string(enc)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := schedules(t)
		rec := serve(a, "PUT", "/v1/schedules/fuzzed", body)
		checkAnswer(t, rec, body)
		if rec.Code >= 400 && schedules(t) != before {
			t.Fatalf("input %q was refused (%d) but wrote", body, rec.Code)
		}
	})
}
