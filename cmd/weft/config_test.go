package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeConfigFile runs the real binary with a config file: the
// server opens the file's database and works its queues, and the command
// line's --addr and --log-format (which startServer passes) win over the
// file's.
func TestServeConfigFile(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "from-config.db")
	cfg := filepath.Join(dir, "weft.toml")
	text := `addr = "127.0.0.1:1"      # overridden by --addr
database = "` + db + `"
queue = ["default=2", "mail=1"]
grace = "5s"
log-level = "info"
log-format = "text"             # overridden by --log-format json
`
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, []string{"WEFT_API_TOKEN=", "WEFT_DATABASE_URL="}, "--config", cfg)
	id := enqueue(t, s, "http", `{"url":"http://127.0.0.1:1/"}`, "--queue", "mail")
	if task := getTask(t, s, id); task.Queue != "mail" {
		t.Errorf("task = %+v", task)
	}
	if _, err := os.Stat(db); err != nil {
		t.Errorf("the config's database was not used: %v", err)
	}
	// startServer found the server's address in a JSON log line: the
	// flag's format won over the file's.
	if log := s.Log(); !strings.Contains(log, `"database":"`+db+`"`) {
		t.Errorf("the log does not name the config's database:\n%s", log)
	}
}
