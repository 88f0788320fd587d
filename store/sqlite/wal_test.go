// The race detector makes this test's 64 MiB of writes take half a
// minute; `make test` runs it once more without the detector.

//go:build !race

package sqlite_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
)

// Under writes that never pause, with readers busy too, the WAL stays
// within a small multiple of its restart bound instead of growing with
// everything written.
func TestWALBoundedUnderContinuousWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 64 MiB")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "weft.db")
	const restartAt = 16 << 20
	st, err := sqlite.Open(ctx, path, &sqlite.Options{WALRestartBytes: restartAt})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	args, _ := json.Marshal(map[string]string{"pad": strings.Repeat("x", 16000)})
	batch := make([]store.NewTask, 50)
	for i := range batch {
		batch[i] = store.NewTask{Kind: "k", Args: args}
	}
	var (
		wg       sync.WaitGroup
		written  atomic.Int64
		maxWAL   atomic.Int64
		stop     = make(chan struct{})
		failures = make(chan error, 4)
	)
	const total = 64 << 20
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for written.Load() < total {
				if _, err := st.Enqueue(ctx, batch); err != nil {
					failures <- err
					return
				}
				written.Add(int64(len(batch) * len(args)))
				if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > maxWAL.Load() {
					maxWAL.Store(fi.Size())
				}
			}
		}()
	}
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := st.List(ctx, store.ListParams{Limit: 100}); err != nil {
				failures <- err
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	readers.Wait()
	close(failures)
	for err := range failures {
		t.Fatal(err)
	}
	// A restart is taken one group after the bound is passed, or a
	// moment later when a reader holds on: twice the bound leaves room for
	// that on a slow machine, and is a third of what was written.
	if got, limit := int64(maxWAL.Load()), int64(2*restartAt); got > limit {
		t.Fatalf("the WAL reached %d bytes (%d written); want at most %d", got, written.Load(), limit)
	}
	t.Logf("WAL at most %.1f MiB while %.0f MiB of args were written", float64(maxWAL.Load())/(1<<20), float64(written.Load())/(1<<20))
}
