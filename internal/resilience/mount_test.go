//go:build linux

package resilience_test

import (
	"bufio"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers "sqlite3" for integrity checks
)

// mountUnavailable skips a test whose mount(2) failed. Without root or
// CAP_SYS_ADMIN (EPERM, EACCES: a CI runner, an unprivileged container) the
// environment simply cannot run it, even under CI; any other failure
// (a kernel without tmpfs, a broken mount helper) is a failure under CI.
func mountUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		t.Skipf("%s: %v: mounting is not permitted in this environment (needs root with CAP_SYS_ADMIN)", what, err)
	}
	skipOrFail(t, "%s: %v", what, err)
}

// mountTmpfs mounts a tmpfs of the given size (mount's size= syntax, like
// "2m") on a fresh directory, unmounted when the test ends.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size="+size+",mode=0755"); err != nil {
		mountUnavailable(t, "mount a "+size+" tmpfs", err)
	}
	// Registered after TempDir's removal, so it runs before it.
	t.Cleanup(func() { unmount(t, dir) })
	return dir
}

// remount changes a mounted filesystem's flags and options in place.
func remount(dir string, flags uintptr, data string) error {
	return syscall.Mount("", dir, "", syscall.MS_REMOUNT|flags, data)
}

// unmount unmounts dir, lazily if something still holds it, so that a
// failed test does not leave a mount behind.
func unmount(t testing.TB, dir string) {
	if err := syscall.Unmount(dir, 0); err != nil {
		if err2 := syscall.Unmount(dir, syscall.MNT_DETACH); err2 != nil {
			t.Errorf("unmount %s: %v; lazily: %v", dir, err, err2)
		}
	}
}

// freeBytes is the space left for unprivileged files on dir's filesystem.
func freeBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var s syscall.Statfs_t
	if err := syscall.Statfs(dir, &s); err != nil {
		t.Fatal(err)
	}
	return int64(s.Bavail) * s.Bsize
}

// mountSource is the device mounted on dir, from /proc/self/mountinfo.
func mountSource(dir string) (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[4] != dir {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+2 < len(fields) {
				return fields[i+2], nil
			}
		}
	}
	return "", fmt.Errorf("%s is not a mount point", dir)
}

// integrityCheck runs PRAGMA integrity_check on the SQLite file at path
// through a connection of its own, read-only so that it works on a full or
// read-only filesystem, and returns its answer ("ok" when sound).
//
// On a read-only filesystem a database in WAL mode whose -wal and -shm
// files are gone cannot be opened even read-only (SQLite cannot create
// them); the check then opens it as immutable, which is sound there since
// nothing can write it.
func integrityCheck(t testing.TB, path string) string {
	t.Helper()
	rows, db, err := queryRO(path, "mode=ro&_busy_timeout=5000", "PRAGMA integrity_check")
	if err != nil && strings.Contains(err.Error(), "unable to open") {
		rows, db, err = queryRO(path, "immutable=1", "PRAGMA integrity_check")
	}
	if err != nil {
		return "integrity_check failed to run: " + err.Error()
	}
	defer db.Close()
	var lines []string
	defer rows.Close()
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return "integrity_check failed: " + err.Error()
		}
		lines = append(lines, s)
	}
	if err := rows.Err(); err != nil {
		return "integrity_check failed: " + err.Error()
	}
	return strings.Join(lines, "\n")
}

// queryRO runs query on a connection of its own opened with the given
// URI parameters; the caller closes db.
func queryRO(path, params, query string) (*sql.Rows, *sql.DB, error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?"+params)
	if err != nil {
		return nil, nil, err
	}
	rows, err := db.Query(query)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return rows, db, nil
}

// fileSizes describes the database's files, for the log.
func fileSizes(path string) string {
	var parts []string
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if st, err := os.Stat(path + suffix); err == nil {
			parts = append(parts, fmt.Sprintf("%s %d KiB", filepath.Base(path+suffix), st.Size()>>10))
		}
	}
	return strings.Join(parts, ", ")
}

// retryFor calls f until it succeeds or d passes, returning the last error
// and how long it took.
func retryFor(d time.Duration, f func() error) (time.Duration, error) {
	start := time.Now()
	for {
		err := f()
		if err == nil || time.Since(start) > d {
			return time.Since(start), err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
