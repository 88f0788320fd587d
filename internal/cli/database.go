package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
	"github.com/weftworks/weft/store/sqlite"
)

// isPostgres reports whether dsn names a PostgreSQL database rather than a
// SQLite file.
func isPostgres(dsn string) bool {
	l := strings.ToLower(dsn)
	return strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://")
}

// openStore opens the backend dsn names: a postgres:// or postgresql://
// URL opens PostgreSQL, anything else is a SQLite file path, created (with
// its schema) when it does not exist yet. Either way pending migrations
// are applied. The caller closes the store.
func openStore(ctx context.Context, dsn string, logger *slog.Logger) (store.Store, error) {
	if strings.TrimSpace(dsn) == "" {
		return nil, errors.New("no database given: set --database or WEFT_DATABASE_URL (a SQLite file path or a postgres:// URL)")
	}
	if isPostgres(dsn) {
		st, err := postgres.Open(ctx, dsn, &postgres.Options{Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("open PostgreSQL database %s: %w", redactURL(dsn), err)
		}
		return st, nil
	}
	if err := checkSQLitePath(dsn); err != nil {
		return nil, err
	}
	st, err := sqlite.Open(ctx, dsn, &sqlite.Options{Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("open SQLite database %s: %w", dsn, err)
	}
	return st, nil
}

// openExistingStore is openStore for commands that only read or change
// tasks: a SQLite file that does not exist is an error (most likely a
// typo) rather than a new, empty database.
func openExistingStore(ctx context.Context, dsn string, logger *slog.Logger) (store.Store, error) {
	if !isPostgres(dsn) && strings.TrimSpace(dsn) != "" {
		if err := checkSQLitePath(dsn); err != nil {
			return nil, err
		}
		if _, err := os.Stat(dsn); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("database file %s does not exist (create it with `weft migrate up --database %s` or `weft serve`)", dsn, dsn)
		}
	}
	return openStore(ctx, dsn, logger)
}

// checkSQLitePath explains the usual mistakes with a SQLite path before
// SQLite reports them less clearly.
func checkSQLitePath(path string) error {
	if strings.ContainsRune(path, 0) {
		// Quoted: printed raw, the NUL would vanish from the message (or
		// cut it short), and stat would only say "invalid argument".
		return fmt.Errorf("database path %q contains a NUL byte", path)
	}
	if info, err := os.Stat(path); err == nil {
		switch {
		case info.IsDir():
			return fmt.Errorf("database path %s is a directory: give a file path, for example %s", path, filepath.Join(path, defaultDatabase))
		case !info.Mode().IsRegular():
			// SQLite would open a device or a pipe as a database, fail
			// with "disk I/O error", and leave its journal beside it (as
			// root, /dev/null-journal).
			return fmt.Errorf("database path %s is not a regular file (a device, pipe or socket): give a SQLite database file path", path)
		}
	}
	dir := filepath.Dir(path)
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("cannot create database %s: directory %s does not exist (create it first)", path, dir)
	case err != nil:
		return fmt.Errorf("database %s: %w", path, err)
	case !info.IsDir():
		return fmt.Errorf("cannot create database %s: %s is not a directory", path, dir)
	}
	return nil
}

// redactURL hides the password of a database URL for messages.
func redactURL(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		// Unparsable: show only the scheme rather than risk a password.
		scheme, _, _ := strings.Cut(dsn, "://")
		return scheme + "://(unparsable URL)"
	}
	return u.Redacted()
}
