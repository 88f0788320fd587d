package cli

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// busyAddr is an address that is taken for the test's duration: serve
// fails to listen there and says which address it tried, which shows
// where its --addr came from.
func busyAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "weft.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfigPrecedence checks that a config file sets serve's flags, the
// environment overrides it and the command line overrides both.
func TestConfigPrecedence(t *testing.T) {
	fromFile, fromEnv, fromFlag := busyAddr(t), busyAddr(t), busyAddr(t)
	path := writeConfig(t, `# weft serve settings
addr = "`+fromFile+`"
database = "`+filepath.Join(t.TempDir(), "weft.db")+`"
`)
	failsWith(t, runWeft(t, "serve", "--config", path), exitError, "listen on "+fromFile+": the address is in use")
	env := cli{t: t, env: map[string]string{"WEFT_ADDR": fromEnv}}
	failsWith(t, env.run(context.Background(), "serve", "--config", path), exitError, "listen on "+fromEnv+":")
	failsWith(t, env.run(context.Background(), "serve", "--config", path, "--addr", fromFlag), exitError, "listen on "+fromFlag+":")
	// WEFT_CONFIG names the file when --config does not.
	withFile := cli{t: t, env: map[string]string{"WEFT_CONFIG": path}}
	failsWith(t, withFile.run(context.Background(), "serve"), exitError, "listen on "+fromFile+":")
}

// TestConfigRefusals checks that a config file with an unknown key, a
// value of the wrong type or broken TOML is refused with its line, before
// anything is created.
func TestConfigRefusals(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "weft.db")
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"unknown key", "addr = \"127.0.0.1:0\"\ndatabase = \"" + db + "\"\n\nlease_ttl = \"10s\"\n",
			[]string{`weft.toml: line 4: unknown setting "lease_ttl"`, "lease-ttl", "webhook-deny-private"}},
		{"quoted unknown key", "\"verbose\" = true\n", []string{`line 1: unknown setting "verbose"`}},
		{"a table", "database = \"" + db + "\"\n[queues]\ndefault = 10\n", []string{`line 2: unknown setting "queues"`}},
		{"wrong type", "addr = \"127.0.0.1:0\"\ninsecure = \"yes\"\n", []string{"line 2: insecure: expected true or false, got a string"}},
		{"not a duration", "grace = \"soon\"\n", []string{"line 1: grace:", `"soon"`}},
		{"queue not a list", "queue = \"default=10\"\n", []string{"line 1: queue: expected an array of strings, got a string"}},
		{"bad queue", "queue = [\"default=0\"]\n", []string{"--queue \"default=0\": concurrency must be a number from 1 to 10000"}},
		{"broken TOML", "addr = \"127.0.0.1:0\"\ngrace = \n", []string{"weft.toml: line 2:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			failsWith(t, runWeft(t, "serve", "--config", writeConfig(t, tc.text), "--database", db), exitUsage, tc.want...)
		})
	}
	failsWith(t, runWeft(t, "serve", "--config", filepath.Join(dir, "missing.toml")), exitUsage, "--config", "no such file")
	if _, err := os.Stat(db); err == nil {
		t.Errorf("a refused config created %s", db)
	}
	// Only serve reads a config file.
	failsWith(t, runWeft(t, "list", "--config", "x.toml"), exitUsage, "unknown flag: --config")
}

// TestConfigFullExample serves with the example of docs/operations.md,
// its address and database replaced, through the real command line.
func TestConfigFullExample(t *testing.T) {
	raw, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	start := strings.Index(doc, "```toml\n")
	if start < 0 {
		t.Fatal("docs/operations.md has no toml example")
	}
	example := doc[start+len("```toml\n"):]
	example = example[:strings.Index(example, "```")]
	dir := t.TempDir()
	db := filepath.Join(dir, "from-config.db")
	var lines []string
	for line := range strings.Lines(example) {
		switch {
		case strings.HasPrefix(line, "addr "):
			line = `addr = "` + busyAddr(t) + `"` + "\n"
		case strings.HasPrefix(line, "database "):
			line = `database = "` + db + `"` + "\n"
		}
		lines = append(lines, line)
	}
	path := writeConfig(t, strings.Join(lines, ""))
	// Every key of the example is a setting, and the values are valid:
	// serve gets as far as listening, which fails on the busy address.
	r := runWeft(t, "serve", "--config", path)
	failsWith(t, r, exitError, "the address is in use")
}
