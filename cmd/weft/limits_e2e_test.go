package main_test

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/pgtest"
	"github.com/weftworks/weft/internal/weftproc"
)

// Limits through the real binary against a real server: set, show and
// delete; enqueues refused for an unknown limit (422) and by a reject
// limit at its cap (409 naming the limit and the key); a task set aside,
// saying why; the server's own labels in the registry.

func TestLimitsCLISQLite(t *testing.T) {
	t.Parallel()
	limitCases(t, startServer(t, nil, "--database", filepath.Join(t.TempDir(), "weft.db"), "--label", "region=eu"))
}

func TestLimitsCLIPostgres(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewSchema(t, pgtest.ServerURL(t))
	limitCases(t, startServer(t, []string{"WEFT_DATABASE_URL=" + dsn, "WEFT_LABELS=region=eu"}))
}

// claimHeld claims up to max tasks of queue "held", which the server does
// not work, as a remote worker would: they then hold their slots.
func claimHeld(t *testing.T, s *weftproc.Server, max int) []api.ClaimedTask {
	t.Helper()
	body := `{"worker_id": "holder", "queues": ["held"], "max": ` + strconv.Itoa(max) + `}`
	resp, err := http.Post(s.URL+"/v1/claims", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out api.ClaimResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("claim: %d, %v", resp.StatusCode, err)
	}
	return out.Tasks
}

func limitCases(t *testing.T, s *weftproc.Server) {
	out := s.Must(t, "", "limit", "set", "per-customer", "--concurrency", "3", "--override", "acme=10")
	if strings.TrimSpace(out) != "limit per-customer set: at most 3 running per key (acme: 10)" {
		t.Fatalf("limit set printed %q", out)
	}
	out = s.Must(t, "", "limit", "show", "per-customer")
	for _, want := range []string{"name:        per-customer", "in use:      0", "waiting:     0", "no key is in use or has tasks waiting"} {
		if !strings.Contains(out, want) {
			t.Fatalf("limit show lacks %q:\n%s", want, out)
		}
	}
	failsWith(t, s, 1, "--per: 422 invalid: period", "limit", "set", "openai", "--rate", "500")
	failsWith(t, s, 2, `--override "acme": expected KEY=N`, "limit", "set", "x", "--override", "acme")

	// An unknown limit is refused (422, field limits), and so is an
	// enqueue that a reject limit's key at its cap refuses (409).
	failsWith(t, s, 1, "422 invalid: limits:", "enqueue", "report", "--limit", "per-customr=acme")
	s.Must(t, "", "limit", "set", "exports", "--concurrency", "1", "--on-limit", "reject")
	first := enqueue(t, s, "export", `{}`, "--queue", "held", "--limit", "exports=acme")
	if got := claimHeld(t, s, 10); len(got) != 1 || got[0].ID != first {
		t.Fatalf("claimed %+v, want %s", got, first)
	}
	r := s.Run(t, "", "enqueue", "export", "--queue", "held", "--limit", "exports=acme")
	if r.Code != 1 || !strings.Contains(r.Stderr, "409 limit_reached: limits:") || !strings.Contains(r.Stderr, `limit "exports"`) || !strings.Contains(r.Stderr, `key "acme"`) {
		t.Fatalf("enqueue at the cap of a reject limit: exit %d\n%s", r.Code, r.Stderr)
	}
	enqueue(t, s, "export", `{}`, "--queue", "held", "--limit", "exports=globex") // another key has room

	// A queue limit sets the task behind the key's cap aside, and it says
	// why.
	s.Must(t, "", "limit", "set", "solo", "--concurrency", "1")
	enqueue(t, s, "report", `{}`, "--queue", "held", "--limit", "solo=acme")
	waiting := enqueue(t, s, "report", `{}`, "--queue", "held", "--limit", "solo=acme")
	claimHeld(t, s, 10)
	if out := s.Must(t, "", "task", waiting); !strings.Contains(out, "blocked:     waiting for limit solo (key acme): 1 of 1 in use") {
		t.Fatalf("the task set aside:\n%s", out)
	}
	if task := getTask(t, s, waiting); task.BlockedReason == nil || task.BlockedReason.Reason != "limit" || task.BlockedReason.Limit != "solo" {
		t.Fatalf("blocked_reason = %+v", task.BlockedReason)
	}
	out = s.Must(t, "", "limit", "show", "solo")
	if !strings.Contains(out, "acme  1       1    1        -") {
		t.Fatalf("limit show solo:\n%s", out)
	}
	list := decodeOut[api.LimitList](t, s.Must(t, "", "limits", "--format", "json"))
	if len(list.Limits) != 3 {
		t.Fatalf("limits = %+v", list)
	}

	out = s.Must(t, "", "limit", "delete", "per-customer")
	if !strings.HasPrefix(out, "limit per-customer deleted") {
		t.Fatalf("limit delete printed %q", out)
	}
	failsWith(t, s, 1, `404 limit_not_found: limit "per-customer": limit not found`, "limit", "delete", "per-customer")
	failsWith(t, s, 1, "404 limit_not_found", "limit", "show", "per-customer")

	// The server's labels are in the registry.
	if out := s.Must(t, "", "workers"); !strings.Contains(out, "region=eu") {
		t.Fatalf("workers:\n%s", out)
	}
}
