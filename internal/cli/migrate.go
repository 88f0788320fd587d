package cli

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"time"

	// The SQLite driver registers itself as "sqlite3"; migrate status reads
	// a file's schema version without opening (and so migrating) a store.
	_ "github.com/mattn/go-sqlite3"
	"github.com/spf13/cobra"

	"github.com/weftworks/weft/store/postgres"
	"github.com/weftworks/weft/store/sqlite"
)

// migrationRow is one migration in a status report.
type migrationRow struct {
	Version   int        `json:"version"`
	Name      string     `json:"name"`
	Applied   bool       `json:"applied"`
	AppliedAt *time.Time `json:"applied_at,omitempty"`
}

// migrationReport is what `migrate status` prints, and what up and down
// print after they ran (with --format json).
type migrationReport struct {
	Database string `json:"database"`
	Backend  string `json:"backend"`
	// Exists is false for a SQLite file not created yet.
	Exists     bool           `json:"exists"`
	Current    int            `json:"current_version"`
	Latest     int            `json:"latest_version"`
	Migrations []migrationRow `json:"migrations"`
}

func (r *migrationReport) pending() []migrationRow {
	var out []migrationRow
	for _, m := range r.Migrations {
		if !m.Applied {
			out = append(out, m)
		}
	}
	return out
}

func newMigrateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate [status|up|down]",
		Short: "Show or change the database's schema version",
		Long: `Work on the schema of the database given by --database (or
WEFT_DATABASE_URL; default ` + defaultDatabase + `), straight on the database — no server
is involved.

  status  list the migrations this build knows and which are applied
          (the default when no subcommand is given)
  up      apply pending migrations (weft serve also does this when it starts)
  down    go back to an earlier version with --to N (PostgreSQL only; SQLite
          migrations cannot be undone: restore a backup instead)`,
		Example: `  weft migrate --database weft.db
  weft migrate up --database /var/lib/weft/weft.db
  weft migrate status --database 'postgres://weft@db:5432/app?search_path=weft'
  weft migrate down --to 1 --database 'postgres://weft@db:5432/app?search_path=weft'`,
		Args: exactArgs(0, "a subcommand: status, up or down"),
		RunE: func(cmd *cobra.Command, _ []string) error { return migrateStatus(cmd.Context(), g) },
	}
	status := &cobra.Command{
		Use:     "status",
		Short:   "List applied and pending migrations",
		Long:    "List the migrations this build knows, and whether and when each was applied to --database.",
		Example: "  weft migrate status --database weft.db",
		Args:    exactArgs(0, "no arguments"),
		RunE:    func(cmd *cobra.Command, _ []string) error { return migrateStatus(cmd.Context(), g) },
	}
	var upTo, downTo int
	up := &cobra.Command{
		Use:   "up",
		Short: "Apply pending migrations",
		Long: `Apply the pending migrations to --database, creating a SQLite file that does not
exist yet. PostgreSQL can stop at a version with --to N; SQLite always goes to
the latest version.`,
		Example: "  weft migrate up --database weft.db\n  weft migrate up --to 2 --database postgres://weft@db/app",
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			to := -1
			if cmd.Flags().Changed("to") {
				to = upTo
			}
			return migrateUp(cmd.Context(), g, to)
		},
	}
	up.Flags().IntVar(&upTo, "to", 0, "stop at this version (PostgreSQL only; default the latest)")
	down := &cobra.Command{
		Use:   "down",
		Short: "Undo migrations down to a version (PostgreSQL only)",
		Long: `Undo migrations of a PostgreSQL database until it is at version --to N (0 undoes
all of them, dropping Weft's tables and their data). --to is required, so
that nothing is undone by accident. SQLite migrations cannot be undone.`,
		Example: "  weft migrate down --to 1 --database postgres://weft@db/app",
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := parseDatabase(g.Database)
			if err != nil {
				return err
			}
			if db.postgres == "" {
				return errors.New("migrate down: SQLite migrations cannot be undone (they have no down scripts); restore a copy of the database file taken before the upgrade instead")
			}
			if !cmd.Flags().Changed("to") {
				return usagef("migrate down needs --to N, the version to go back to (0 undoes every migration and drops Weft's data)")
			}
			if downTo < 0 {
				return usagef("--to: %d is negative", downTo)
			}
			return migrateDown(cmd.Context(), g, downTo)
		},
	}
	down.Flags().IntVar(&downTo, "to", 0, "the version to go back to (required)")
	cmd.AddCommand(status, up, down)
	return cmd
}

func migrateStatus(ctx context.Context, g *globals) error {
	r, err := readMigrations(ctx, g.Database)
	if err != nil {
		return err
	}
	return printMigrations(g, r, "")
}

func migrateUp(ctx context.Context, g *globals, to int) error {
	before, err := readMigrations(ctx, g.Database)
	if err != nil {
		return err
	}
	if to >= 0 && to > before.Latest {
		return usagef("--to: this build knows versions up to %d, not %d", before.Latest, to)
	}
	if to >= 0 && to < before.Current {
		return fmt.Errorf("migrate up --to %d: the database is already at version %d (use `weft migrate down --to %d` to go back)", to, before.Current, to)
	}
	if isPostgres(g.Database) {
		if err := postgres.Migrate(ctx, g.Database, to); err != nil {
			return fmt.Errorf("migrate %s: %w", redactURL(g.Database), err)
		}
	} else {
		if to >= 0 && to != before.Latest {
			return usagef("--to: SQLite always migrates to the latest version (%d)", before.Latest)
		}
		// Opening the store applies the pending migrations under the
		// file's write lock, exactly as weft serve would.
		st, err := openStore(ctx, g.Database, g.logger(g.stderr))
		if err != nil {
			return err
		}
		if err := st.Close(); err != nil {
			return fmt.Errorf("close %s: %w", g.Database, err)
		}
	}
	after, err := readMigrations(ctx, g.Database)
	if err != nil {
		return err
	}
	note := fmt.Sprintf("%s is up to date at version %d", after.Database, after.Current)
	if applied := after.Current - before.Current; applied > 0 {
		note = fmt.Sprintf("migrated %s from version %d to %d (%s applied)", after.Database, before.Current, after.Current, plural(applied, "migration"))
	}
	return printMigrations(g, after, note)
}

func migrateDown(ctx context.Context, g *globals, to int) error {
	before, err := readMigrations(ctx, g.Database)
	if err != nil {
		return err
	}
	if to >= before.Current {
		return fmt.Errorf("migrate down --to %d: the database is at version %d, nothing to undo", to, before.Current)
	}
	if err := postgres.Migrate(ctx, g.Database, to); err != nil {
		return fmt.Errorf("migrate %s down to %d: %w", redactURL(g.Database), to, err)
	}
	after, err := readMigrations(ctx, g.Database)
	if err != nil {
		return err
	}
	return printMigrations(g, after, fmt.Sprintf("migrated %s down from version %d to %d", after.Database, before.Current, after.Current))
}

// printMigrations prints a report, with a note first for people.
func printMigrations(g *globals, r *migrationReport, note string) error {
	if g.Format != formatHuman {
		return writeJSON(g.stdout, g.Format, r)
	}
	if note != "" {
		fmt.Fprintln(g.stdout, note)
	}
	backend := "SQLite"
	if r.Backend == "postgres" {
		backend = "PostgreSQL"
	}
	fmt.Fprintf(g.stdout, "database: %s (%s)\n", r.Database, backend)
	pending := r.pending()
	switch {
	case !r.Exists:
		fmt.Fprintf(g.stdout, "the file does not exist yet: `weft migrate up` (or `weft serve`) creates it at version %d\n", r.Latest)
	case len(pending) == 0:
		fmt.Fprintf(g.stdout, "schema version %d, up to date\n", r.Current)
	default:
		fmt.Fprintf(g.stdout, "schema version %d of %d: %s pending (apply with `weft migrate up`)\n", r.Current, r.Latest, plural(len(pending), "migration"))
	}
	now := time.Now()
	tw := newTable(g.stdout)
	fmt.Fprintln(tw, "VERSION\tNAME\tSTATUS\tAPPLIED AT")
	for _, m := range r.Migrations {
		status, at := "pending", "-"
		if m.Applied {
			status = "applied"
			if m.AppliedAt != nil {
				at = when(*m.AppliedAt, now)
			}
		}
		fmt.Fprintf(tw, "%04d\t%s\t%s\t%s\n", m.Version, m.Name, status, at)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// readMigrations reports which migrations the database has, without
// changing it.
func readMigrations(ctx context.Context, dsn string) (*migrationReport, error) {
	db, err := parseDatabase(dsn)
	if err != nil {
		return nil, err
	}
	if db.postgres != "" {
		return readPostgresMigrations(ctx, db.postgres)
	}
	return readSQLiteMigrations(ctx, db.path)
}

func readPostgresMigrations(ctx context.Context, dsn string) (*migrationReport, error) {
	states, err := postgres.MigrationStatus(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("migration status of %s: %w", redactURL(dsn), err)
	}
	r := &migrationReport{Database: redactURL(dsn), Backend: "postgres", Exists: true}
	for _, s := range states {
		row := migrationRow{Version: s.Version, Name: s.Name, Applied: !s.AppliedAt.IsZero()}
		if row.Applied {
			at := s.AppliedAt.UTC()
			row.AppliedAt = &at
			r.Current = max(r.Current, s.Version)
		}
		r.Latest = max(r.Latest, s.Version)
		r.Migrations = append(r.Migrations, row)
	}
	return r, nil
}

// readSQLiteMigrations reads the weft_migrations table (where
// store/sqlite records each applied version) through a read-only
// connection, so that looking never creates or migrates the file.
func readSQLiteMigrations(ctx context.Context, path string) (*migrationReport, error) {
	ms, err := sqlite.Migrations()
	if err != nil {
		return nil, err
	}
	r := &migrationReport{Database: path, Backend: "sqlite"}
	applied := map[int]time.Time{}
	if err := checkSQLitePath(path); err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err == nil {
		r.Exists = true
		if applied, err = sqliteApplied(ctx, path); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	for _, m := range ms {
		row := migrationRow{Version: m.Version, Name: m.Name}
		if at, ok := applied[m.Version]; ok {
			row.Applied, row.AppliedAt = true, &at
			r.Current = max(r.Current, m.Version)
		}
		r.Latest = max(r.Latest, m.Version)
		r.Migrations = append(r.Migrations, row)
	}
	for v := range applied {
		if v > r.Latest {
			return nil, fmt.Errorf("database %s has schema version %d, newer than this build knows (%d): upgrade weft", path, v, r.Latest)
		}
	}
	return r, nil
}

func sqliteApplied(ctx context.Context, path string) (map[int]time.Time, error) {
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?mode=ro&_busy_timeout=5000"
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'weft_migrations'").Scan(&n); err != nil {
		return nil, fmt.Errorf("read %s (is it a SQLite database?): %w", path, err)
	}
	out := map[int]time.Time{}
	if n == 0 {
		return out, nil
	}
	rows, err := db.QueryContext(ctx, "SELECT version, applied_at FROM weft_migrations")
	if err != nil {
		return nil, fmt.Errorf("read the schema version of %s: %w", path, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			v  int
			at int64
		)
		if err := rows.Scan(&v, &at); err != nil {
			return nil, fmt.Errorf("read the schema version of %s: %w", path, err)
		}
		out[v] = time.UnixMicro(at).UTC()
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the schema version of %s: %w", path, err)
	}
	return out, nil
}
