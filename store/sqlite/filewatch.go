package sqlite

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"
)

// fileWatch reports writes to the database's files (the database, its WAL
// and shared-memory index) by any process, through the operating system's
// file notifications (inotify, kqueue, ...). It lets an idle writer notice
// another process's commit at once without polling PRAGMA data_version
// every few milliseconds: polling that often kept an idle server at 4% of
// a core. The directory is watched rather than the files, because SQLite
// deletes and recreates the WAL.
type fileWatch struct {
	w   *fsnotify.Watcher
	dir string
	log *slog.Logger
	// changed receives a value, coalesced, after a write to one of the
	// files.
	changed chan struct{}
	done    chan struct{}
}

func watchFiles(path string, log *slog.Logger) (*fileWatch, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("file notifications: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("file notifications: %w", err)
	}
	if err := w.Add(filepath.Dir(abs)); err != nil {
		w.Close()
		return nil, fmt.Errorf("file notifications on %s: %w", filepath.Dir(abs), err)
	}
	f := &fileWatch{w: w, dir: filepath.Dir(abs), log: log, changed: make(chan struct{}, 1), done: make(chan struct{})}
	go f.loop(filepath.Base(abs), log)
	return f, nil
}

func (f *fileWatch) loop(base string, log *slog.Logger) {
	defer close(f.done)
	for {
		select {
		case ev, ok := <-f.w.Events:
			if !ok {
				return
			}
			if !ev.Has(fsnotify.Write) && !ev.Has(fsnotify.Create) {
				continue
			}
			if name := filepath.Base(ev.Name); name != base && !strings.HasPrefix(name, base+"-") {
				continue
			}
			select {
			case f.changed <- struct{}{}:
			default:
			}
		case err, ok := <-f.w.Errors:
			if !ok {
				return
			}
			// An overflowed event queue loses nothing that matters: the
			// next poll or write is checked against data_version anyway.
			log.Debug("sqlite: file notifications", "err", err)
		}
	}
}

// disarm stops the notifications while the file is busy: the idle
// watcher polls often then, and every commit, this process's own
// included, would otherwise cost a notification and two goroutine
// wakeups (measured: +0.8 ms on the cross-process pickup's median).
func (f *fileWatch) disarm() {
	if err := f.w.Remove(f.dir); err != nil {
		f.log.Debug("sqlite: file notifications off", "err", err)
	}
}

// arm starts the notifications again once the file has gone quiet. It
// reports false when it could not, and the poll alone watches then.
func (f *fileWatch) arm() bool {
	if err := f.w.Add(f.dir); err != nil {
		f.log.Debug("sqlite: file notifications on", "err", err)
		return false
	}
	return true
}

func (f *fileWatch) close() {
	f.w.Close()
	<-f.done
}
