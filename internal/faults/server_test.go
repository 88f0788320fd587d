package faults_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/mattn/go-sqlite3" // the test's own look at the server's file

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/weftproc"
)

// holdKind is a kind no worker runs: the batches stay pending, to be
// counted.
const holdKind = "rel.hold"

// holdArgs tag each task with its batch and its place in it.
type holdArgs struct {
	Batch string `json:"batch"`
	I     int    `json:"i"`
}

// sentBatch is a batch a client posted.
type sentBatch struct {
	size  int
	acked bool // the server answered 201 with an id per task
	// seen is what a check after a restart found: 0 (absent) or size
	// (present); -1 before the first check. An unacknowledged batch may
	// be either, but must not change its mind.
	seen int
}

// TestServerKilled kills `weft serve` with SIGKILL while clients post
// batches to it, restarts it on the same database, and checks that every
// acknowledged batch is stored in full and every other batch in full or
// not at all — over several kills.
func TestServerKilled(t *testing.T) {
	sz := runSizes()
	eachBackend(t, func(t *testing.T, b backend) {
		db := b.newDB(t)
		env, args := b.serve(db)
		var (
			mu      sync.Mutex
			batches = map[string]*sentBatch{}
		)
		// Never retried: a POST is not idempotent, and the transport does
		// not replay it on a broken connection.
		client := &http.Client{Timeout: 30 * time.Second}
		const clients = 6
		var inflightAtKill int
		s := weftproc.StartServer(t, weftBin, env, args...)
		for round := range sz.serverRounds {
			ctx, cancel := context.WithCancel(context.Background())
			var (
				wg       sync.WaitGroup
				inflight atomic.Int64
			)
			for c := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for seq := 0; ctx.Err() == nil; seq++ {
						id := fmt.Sprintf("r%d-c%d-%d", round, c, seq)
						size := 1 + rand.IntN(500)
						sb := &sentBatch{size: size, seen: -1}
						mu.Lock()
						batches[id] = sb
						mu.Unlock()
						inflight.Add(1)
						acked, err := postBatch(ctx, client, s.URL, id, size)
						inflight.Add(-1)
						if err != nil {
							return // the server is gone (or going)
						}
						mu.Lock()
						sb.acked = acked
						mu.Unlock()
					}
				}()
			}
			// A random moment, once the clients are well under way.
			time.Sleep(300*time.Millisecond + rand.N(1200*time.Millisecond))
			atKill := int(inflight.Load())
			inflightAtKill += atKill
			if err := s.Stop(t, syscall.SIGKILL); err == nil {
				t.Fatal("weft serve exited cleanly after SIGKILL")
			}
			cancel()
			wg.Wait()
			if b.name == "sqlite" {
				integrityCheck(t, db)
			}
			s = weftproc.StartServer(t, weftBin, env, args...)
			sent, acked, present, absent := checkBatches(t, b, db, batches)
			t.Logf("%s: kill %d: %d requests in flight; so far %d batches sent, %d acknowledged; of the others %d stored in full, %d not at all",
				b.name, round+1, atKill, sent, acked, present, absent)
		}
		if err := s.Stop(t, syscall.SIGTERM); err != nil {
			t.Errorf("weft serve after SIGTERM: %v, want a clean exit", err)
		}
		if b.name == "sqlite" {
			integrityCheck(t, db)
		}
		var tasks, ackedTasks, acked, present, absent, presentTasks int
		for _, sb := range batches {
			tasks += sb.size
			switch {
			case sb.acked:
				acked++
				ackedTasks += sb.size
			case sb.seen > 0:
				present++
				presentTasks += sb.size
			default:
				absent++
			}
		}
		t.Logf("%s: %d SIGKILLs of weft serve with %d requests in flight in all; %d batches sent (%d tasks): %d acknowledged (%d tasks), all stored in full; "+
			"%d unacknowledged: %d stored in full (%d tasks: committed, answer lost), %d not at all; no batch torn",
			b.name, sz.serverRounds, inflightAtKill, len(batches), tasks, acked, ackedTasks, present+absent, present, presentTasks, absent)
	})
}

// postBatch posts batch id of size holdKind tasks. acked is true when the
// server answered 201 with an id for each; err when no answer came.
func postBatch(ctx context.Context, client *http.Client, url, id string, size int) (acked bool, err error) {
	var body bytes.Buffer
	body.WriteString(`{"tasks":[`)
	for i := range size {
		if i > 0 {
			body.WriteByte(',')
		}
		args, _ := json.Marshal(holdArgs{Batch: id, I: i})
		fmt.Fprintf(&body, `{"kind":%q,"args":%s}`, holdKind, args)
	}
	body.WriteString(`]}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/tasks", &body)
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return false, err
	}
	var out api.BatchEnqueued
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(raw, &out) != nil || len(out.Tasks) != size {
		return false, nil
	}
	return true, nil
}

// stored is what the database holds of one batch.
type stored struct{ n, distinct, first, last int }

// storedBatches counts the tasks of each batch in the database, in SQL of
// its own rather than through the store under test.
func storedBatches(t *testing.T, b backend, db string) map[string]stored {
	t.Helper()
	ctx := context.Background()
	out := map[string]stored{}
	add := func(batch string, s stored) {
		if _, dup := out[batch]; dup {
			t.Fatalf("batch %s counted twice", batch)
		}
		out[batch] = s
	}
	if b.name == "postgres" {
		conn, err := pgx.Connect(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, `SELECT args->>'batch', count(*), count(DISTINCT args->>'i'),
			min((args->>'i')::int), max((args->>'i')::int) FROM weft_tasks WHERE kind = $1 GROUP BY 1`, holdKind)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var (
				batch string
				s     stored
			)
			if err := rows.Scan(&batch, &s.n, &s.distinct, &s.first, &s.last); err != nil {
				t.Fatal(err)
			}
			add(batch, s)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	sdb, err := sql.Open("sqlite3", db)
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	// args is a BLOB holding JSON text: cast, or SQLite would read it as JSONB.
	rows, err := sdb.QueryContext(ctx, `SELECT json_extract(CAST(args AS TEXT), '$.batch') AS batch, count(*),
		count(DISTINCT json_extract(CAST(args AS TEXT), '$.i')), min(json_extract(CAST(args AS TEXT), '$.i')),
		max(json_extract(CAST(args AS TEXT), '$.i')) FROM weft_tasks WHERE kind = ? GROUP BY batch`, holdKind)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			batch string
			s     stored
		)
		if err := rows.Scan(&batch, &s.n, &s.distinct, &s.first, &s.last); err != nil {
			t.Fatal(err)
		}
		add(batch, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkBatches checks what the database holds of each batch against what
// the clients were told. It returns how many batches were sent and
// acknowledged, and how many of the others are stored in full and not at
// all.
func checkBatches(t *testing.T, b backend, db string, batches map[string]*sentBatch) (sent, acked, present, absent int) {
	t.Helper()
	found := storedBatches(t, b, db)
	var problems []string
	for id, f := range found {
		sb := batches[id]
		switch {
		case sb == nil:
			problems = append(problems, fmt.Sprintf("batch %s is stored but was never sent", id))
		case f.distinct != f.n || f.first != 0 || f.last != sb.size-1:
			problems = append(problems, fmt.Sprintf("batch %s (size %d) holds %d tasks, %d distinct, numbered %d to %d", id, sb.size, f.n, f.distinct, f.first, f.last))
		}
	}
	for id, sb := range batches {
		n := found[id].n
		sent++
		switch {
		case sb.acked && n != sb.size:
			problems = append(problems, fmt.Sprintf("acknowledged batch %s: %d of %d tasks stored", id, n, sb.size))
		case sb.acked:
			acked++
		case n != 0 && n != sb.size:
			problems = append(problems, fmt.Sprintf("unacknowledged batch %s is torn: %d of %d tasks stored", id, n, sb.size))
		case sb.seen >= 0 && n != sb.seen:
			problems = append(problems, fmt.Sprintf("unacknowledged batch %s: %d tasks stored, %d after an earlier restart", id, n, sb.seen))
		case n == 0:
			absent++
		default:
			present++
		}
		sb.seen = n
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		t.Fatalf("%d problems after a restart:\n%s", len(problems), strings.Join(problems[:min(20, len(problems))], "\n"))
	}
	return sent, acked, present, absent
}

// integrityCheck runs PRAGMA integrity_check on a SQLite file nobody is
// writing, and requires "ok".
func integrityCheck(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("PRAGMA integrity_check")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		out = append(out, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0] != "ok" {
		t.Fatalf("PRAGMA integrity_check on %s: %q", path, out)
	}
}
