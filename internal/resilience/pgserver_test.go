//go:build linux

package resilience_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgServer is a PostgreSQL server of the test's own, in a temporary
// directory on a random port of 127.0.0.1. The shared server other
// packages test against must never be restarted under them, so restart
// tests bring their own.
type pgServer struct {
	t       testing.TB
	bin     string
	base    string
	data    string
	logFile string
	port    int
	// cred runs the server's programs as the postgres user when the test
	// runs as root: initdb and postgres refuse to run as root.
	cred *syscall.Credential
}

// findPostgresBin returns the directory holding initdb, pg_ctl and
// postgres: WEFT_TEST_PG_BINDIR, else the newest /usr/lib/postgresql/N/bin
// (Debian, Ubuntu), /usr/pgsql-N/bin (RHEL), or the PATH.
func findPostgresBin() (string, error) {
	has := func(dir string) bool {
		for _, p := range []string{"initdb", "pg_ctl", "postgres"} {
			if st, err := os.Stat(filepath.Join(dir, p)); err != nil || st.IsDir() {
				return false
			}
		}
		return true
	}
	if d := os.Getenv("WEFT_TEST_PG_BINDIR"); d != "" {
		if !has(d) {
			return "", fmt.Errorf("WEFT_TEST_PG_BINDIR=%s lacks initdb, pg_ctl or postgres", d)
		}
		return d, nil
	}
	var dirs []string
	for _, pattern := range []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"} {
		m, _ := filepath.Glob(pattern)
		dirs = append(dirs, m...)
	}
	version := regexp.MustCompile(`(\d+)`)
	num := func(d string) int {
		n, _ := strconv.Atoi(version.FindString(d))
		return n
	}
	slices.SortFunc(dirs, func(a, b string) int { return num(b) - num(a) })
	for _, d := range dirs {
		if has(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && has(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no PostgreSQL server binaries (initdb, pg_ctl, postgres) in /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin or the PATH; set WEFT_TEST_PG_BINDIR")
}

// startPostgres initialises and starts a private server, stopped and
// removed when the test ends. It skips the test when there are no
// PostgreSQL binaries, or fails it under CI.
func startPostgres(t *testing.T) *pgServer {
	t.Helper()
	bin, err := findPostgresBin()
	if err != nil {
		skipOrFail(t, "%v", err)
	}
	// Not t.TempDir: its parents are private to the test's user, and the
	// server may run as another.
	base, err := os.MkdirTemp("", "weft-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	s := &pgServer{t: t, bin: bin, base: base, data: filepath.Join(base, "data"), logFile: filepath.Join(base, "server.log")}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			skipOrFail(t, "running as root and there is no postgres user to run the server as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(base, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := s.run(filepath.Join(bin, "initdb"), "-D", s.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	t.Cleanup(s.stop)
	// A port chosen this way can be taken before the server binds it;
	// another try takes another port.
	for try := 1; ; try++ {
		if err := s.configure(freePort(t)); err != nil {
			t.Fatal(err)
		}
		out, err := s.ctl("start", "-w", "-t", "60")
		if err == nil {
			break
		}
		if try == 3 {
			log, _ := os.ReadFile(s.logFile)
			t.Fatalf("pg_ctl start: %v\n%s\nserver log:\n%s", err, out, log)
		}
	}
	if err := s.waitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("private PostgreSQL (%s) on 127.0.0.1:%d, data in %s", filepath.Base(filepath.Dir(bin)), s.port, s.data)
	return s
}

// configure writes the server's settings. Durability stays as in
// production: fsync, synchronous_commit and full_page_writes on, since an
// immediate shutdown is meant to test crash recovery.
func (s *pgServer) configure(port int) error {
	s.port = port
	conf := fmt.Sprintf(`
# Written by the resilience tests.
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 100
`, port, s.base)
	// include_if_exists keeps the last configuration only, whatever the
	// number of attempts.
	path := filepath.Join(s.data, "weft_test.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return err
	}
	main := filepath.Join(s.data, "postgresql.conf")
	b, err := os.ReadFile(main)
	if err != nil {
		return err
	}
	if !strings.Contains(string(b), "weft_test.conf") {
		b = append(b, "\ninclude_if_exists = 'weft_test.conf'\n"...)
		if err := os.WriteFile(main, b, 0o600); err != nil {
			return err
		}
	}
	if s.cred != nil {
		return os.Chown(path, int(s.cred.Uid), int(s.cred.Gid))
	}
	return nil
}

// URL is the server's postgres database.
func (s *pgServer) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

// run runs a server program as the server's user.
func (s *pgServer) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.Dir = s.base
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd.CombinedOutput()
}

// ctl runs pg_ctl on the data directory. The server's output goes to its
// log file: were it left on pg_ctl's pipes, the server would hold them
// open and CombinedOutput would never return.
func (s *pgServer) ctl(args ...string) ([]byte, error) {
	return s.run(filepath.Join(s.bin, "pg_ctl"), append(args, "-D", s.data, "-l", s.logFile)...)
}

// Restart restarts the server with shutdown mode (fast: sessions are
// terminated and a checkpoint is written; immediate: the server quits
// without one, as in a crash, and recovers from the WAL on start). It
// returns once the server accepts connections again.
func (s *pgServer) Restart(mode string) error {
	if out, err := s.ctl("restart", "-m", mode, "-w", "-t", "60"); err != nil {
		log, _ := os.ReadFile(s.logFile)
		return fmt.Errorf("pg_ctl restart -m %s: %v\n%s\nserver log:\n%s", mode, err, out, log)
	}
	return s.waitReady(30 * time.Second)
}

// waitReady waits until a connection succeeds.
func (s *pgServer) waitReady(d time.Duration) error {
	var err error
	ok := eventually(d, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var c *pgx.Conn
		if c, err = pgx.Connect(ctx, s.URL()); err == nil {
			c.Close(ctx)
			return true
		}
		return false
	})
	if !ok {
		return fmt.Errorf("PostgreSQL on port %d not ready after %s: %v", s.port, d, err)
	}
	return nil
}

// LogTail is the end of the server's log.
func (s *pgServer) LogTail(n int) string {
	b, _ := os.ReadFile(s.logFile)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

func (s *pgServer) stop() {
	if _, err := os.Stat(filepath.Join(s.data, "postmaster.pid")); err != nil {
		return
	}
	if out, err := s.ctl("stop", "-m", "immediate", "-w", "-t", "30"); err != nil {
		s.t.Logf("pg_ctl stop: %v\n%s", err, out)
	}
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
