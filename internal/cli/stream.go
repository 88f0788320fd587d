package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/weftworks/weft/internal/api"
)

// streamTask prints a task's output stream live until it ends, and exits
// as --monitor does by the task's final state. Text frames are printed as
// they were written, JSON frames as a line of JSON each; with --format json
// or ndjson, every frame, the end included, is a line of NDJSON. A dropped
// stream is resumed after the last frame printed.
func streamTask(ctx context.Context, g *globals, b backend, id string) error {
	raw := !g.formatFlag || g.Format == formatHuman
	out := &lineWriter{w: g.stdout}
	var (
		after    int64
		failures int
		log      = g.logger(g.stderr)
	)
	for {
		got := 0
		var streamErr error
		for f, err := range b.Stream(ctx, id, after) {
			if err != nil {
				streamErr = err
				break
			}
			got++
			if err := printFrame(out, f, raw); err != nil {
				return err
			}
			if f.Kind == api.FrameEnd {
				if err := out.endLine(); err != nil {
					return err
				}
				return taskOutcome(ctx, b, id, f.State)
			}
			after = f.Seq
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if streamErr != nil && !retriable(streamErr) {
			return fmt.Errorf("stream %s: %w", id, streamErr)
		}
		if got > 0 {
			failures = 0
		}
		failures++
		if failures > maxReconnects {
			if streamErr == nil {
				streamErr = errors.New("the server ended the stream before it ended")
			}
			return fmt.Errorf("stream %s: gave up after %d reconnects: %w", id, maxReconnects, streamErr)
		}
		delay := time.Duration(1<<(failures-1)) * 250 * time.Millisecond
		log.Warn("output stream interrupted; reconnecting", "task", id, "after_seq", after, "in", delay, "err", streamErr)
		if err := sleep(ctx, delay); err != nil {
			return err
		}
	}
}

// printFrame prints one frame: raw, a text frame's text as it is and a
// JSON frame as a line (the end prints nothing); otherwise every frame as
// a line of NDJSON.
func printFrame(out *lineWriter, f api.Frame, raw bool) error {
	if !raw {
		return writeJSON(out, formatNDJSON, f)
	}
	switch f.Kind {
	case "text":
		var s string
		if err := json.Unmarshal(f.Data, &s); err != nil {
			return fmt.Errorf("frame %d: %w", f.Seq, err)
		}
		_, err := io.WriteString(out, s)
		return err
	case "json":
		if err := out.endLine(); err != nil {
			return err
		}
		_, err := fmt.Fprintf(out, "%s\n", f.Data)
		return err
	}
	return nil
}

// lineWriter writes through to w and remembers whether the output ends a
// line, so that a JSON frame after text that did not end its line, and
// the end of the output, start a new one.
type lineWriter struct {
	w       io.Writer
	midLine bool
}

func (l *lineWriter) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	if n > 0 {
		l.midLine = p[n-1] != '\n'
	}
	if err != nil {
		return n, fmt.Errorf("write output: %w", err)
	}
	return n, nil
}

// endLine ends the current line, if one is open.
func (l *lineWriter) endLine() error {
	if !l.midLine {
		return nil
	}
	_, err := l.Write([]byte{'\n'})
	return err
}
