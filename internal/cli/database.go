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
	"regexp"
	"strings"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
	"github.com/weftworks/weft/store/sqlite"
)

// database is what --database names: a PostgreSQL URL or a SQLite file.
type database struct {
	// postgres is the postgres:// or postgresql:// URL, or "" for SQLite.
	postgres string
	// path is the SQLite file's path.
	path string
	// mustExist is set by a file: URI with mode=rw: SQLite would refuse
	// to create the file.
	mustExist bool
}

// String is the database for messages and logs, without a password.
func (d database) String() string {
	if d.postgres != "" {
		return redactURL(d.postgres)
	}
	return d.path
}

// isPostgres reports whether dsn names a PostgreSQL database rather than a
// SQLite file.
func isPostgres(dsn string) bool {
	l := strings.ToLower(dsn)
	return strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://")
}

// urlScheme matches the scheme of a URL ("mysql://..."), which no SQLite
// path the user means begins with.
var urlScheme = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*)://`)

// parseDatabase reads a --database value: a postgres:// or postgresql://
// URL; or a SQLite file as a plain path, sqlite:PATH, sqlite://PATH or a
// SQLite URI file:PATH (whose only parameter Weft takes is mode, rwc or
// rw: it sets every other connection setting itself). Any other URL scheme
// is refused by name rather than taken for a file name.
func parseDatabase(dsn string) (database, error) {
	if strings.TrimSpace(dsn) == "" {
		return database{}, usagef("no database given: set --database or WEFT_DATABASE_URL (a SQLite file path or a postgres:// URL)")
	}
	if isPostgres(dsn) {
		return database{postgres: dsn}, nil
	}
	lower := strings.ToLower(dsn)
	switch {
	case strings.HasPrefix(lower, "sqlite://"):
		return sqliteURI(dsn, dsn[len("sqlite://"):])
	case strings.HasPrefix(lower, "sqlite:"):
		return sqliteURI(dsn, dsn[len("sqlite:"):])
	case strings.HasPrefix(lower, "file:"):
		return sqliteURI(dsn, dsn[len("file:"):])
	}
	if m := urlScheme.FindStringSubmatch(dsn); m != nil {
		return database{}, usagef("--database: %s:// is not supported: use a SQLite path (for example ./weft.db) or a postgres:// URL", strings.ToLower(m[1]))
	}
	return database{path: dsn}, nil
}

// sqliteURI reads the part of a sqlite: or file: URI after the scheme:
// a path (percent-encoded, as in a URI), then optional parameters. A file:
// URI's "//" authority, which SQLite allows empty or "localhost", is
// dropped, so file:///var/lib/weft.db is /var/lib/weft.db.
func sqliteURI(dsn, rest string) (database, error) {
	rawPath, rawQuery, _ := strings.Cut(rest, "?")
	if after, ok := strings.CutPrefix(rawPath, "//"); ok && (strings.HasPrefix(after, "/") || strings.HasPrefix(after, "localhost/")) {
		rawPath = after[strings.Index(after, "/"):]
	}
	path, err := url.PathUnescape(rawPath)
	if err != nil {
		return database{}, usagef("--database %q: the path is not valid percent-encoding: %w", dsn, err)
	}
	if path == "" {
		return database{}, usagef("--database %q names no file (for example sqlite:./weft.db)", dsn)
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return database{}, usagef("--database %q: the parameters after ? are not valid: %w", dsn, err)
	}
	d := database{path: path}
	for key, vals := range q {
		if key != "mode" {
			return database{}, usagef("--database %q: parameter %q is not supported: Weft sets SQLite's settings itself (only mode=rwc or mode=rw may be given)", dsn, key)
		}
		switch vals[len(vals)-1] {
		case "rwc":
		case "rw":
			d.mustExist = true
		default:
			return database{}, usagef("--database %q: mode=%s is not supported: Weft needs to write (use mode=rwc, or mode=rw for a file that must exist)", dsn, vals[len(vals)-1])
		}
	}
	return d, nil
}

// openStore opens the backend dsn names (see parseDatabase): a PostgreSQL
// database, or a SQLite file, created (with its schema) when it does not
// exist yet. Either way pending migrations are applied. The caller closes
// the store.
func openStore(ctx context.Context, dsn string, logger *slog.Logger) (store.Store, error) {
	db, err := parseDatabase(dsn)
	if err != nil {
		return nil, err
	}
	return db.open(ctx, logger)
}

// open opens the database (see openStore).
func (d database) open(ctx context.Context, logger *slog.Logger) (store.Store, error) {
	if d.postgres != "" {
		st, err := postgres.Open(ctx, d.postgres, &postgres.Options{Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("open PostgreSQL database %s: %w", d, err)
		}
		return st, nil
	}
	if err := d.checkSQLite(); err != nil {
		return nil, err
	}
	st, err := sqlite.Open(ctx, d.path, &sqlite.Options{Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("open SQLite database %s: %w", d.path, err)
	}
	return st, nil
}

// openExistingStore is openStore for commands that only read or change
// tasks: a SQLite file that does not exist is an error (most likely a
// typo) rather than a new, empty database.
func openExistingStore(ctx context.Context, dsn string, logger *slog.Logger) (store.Store, error) {
	db, err := parseDatabase(dsn)
	if err != nil {
		return nil, err
	}
	db.mustExist = true
	return db.open(ctx, logger)
}

// checkSQLite checks the file's path, and that it exists when it must.
func (d database) checkSQLite() error {
	if err := checkSQLitePath(d.path); err != nil {
		return err
	}
	if d.mustExist {
		if _, err := os.Stat(d.path); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("database file %s does not exist (create it with `weft migrate up --database %s` or `weft serve`)", d.path, d.path)
		}
	}
	return nil
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
