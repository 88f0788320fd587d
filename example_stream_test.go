package weft_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store/sqlite"
)

// CrawlArgs crawls a site, reporting each page as it goes.
type CrawlArgs struct {
	Site  string `json:"site"`
	Pages int    `json:"pages"`
}

func (CrawlArgs) Kind() string { return "example.crawl" }

// Example_stream runs a task that writes its output as it works — a line
// of text per page, and a JSON summary — while the caller follows the
// stream live, from its first frame to its end.
func Example_stream() {
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir, err := os.MkdirTemp("", "weft-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	st, err := sqlite.Open(ctx, filepath.Join(dir, "weft.db"), &sqlite.Options{Logger: logger})
	if err != nil {
		panic(err)
	}
	defer st.Close()

	workers := weft.NewWorkers()
	weft.AddWorkerFunc(workers, func(ctx context.Context, t *weft.Task[CrawlArgs]) error {
		for page := 1; page <= t.Args.Pages; page++ {
			if err := t.StreamText(ctx, fmt.Sprintf("fetched %s/page/%d", t.Args.Site, page)); err != nil {
				return err
			}
		}
		return t.Stream(ctx, map[string]int{"pages": t.Args.Pages})
	})
	client, err := weft.NewClient(st, &weft.Config{Workers: workers, Logger: logger})
	if err != nil {
		panic(err)
	}
	if err := client.Start(ctx); err != nil {
		panic(err)
	}
	defer client.Stop(ctx)

	res, err := client.Enqueue(ctx, CrawlArgs{Site: "example.com", Pages: 3}, nil)
	if err != nil {
		panic(err)
	}
	end, err := client.FollowStream(ctx, res.ID, 0, func(f weft.Frame) error {
		fmt.Printf("#%d %s: %s\n", f.Seq, f.Kind, f.Data)
		return nil
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("end:", end.State)
	// Output:
	// #1 text: fetched example.com/page/1
	// #2 text: fetched example.com/page/2
	// #3 text: fetched example.com/page/3
	// #4 json: {"pages":3}
	// end: completed
}
