// Package weftproc runs the real weft binary in tests: built once per test
// binary by Main, then `weft serve` as a subprocess on a real database, and
// the CLI against it. The end-to-end tests of cmd/weft and the
// fault-injection suite of internal/faults share it, so that both test the
// binary users run rather than a copy of its wiring.
package weftproc

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Main builds the weft binary into a temporary directory, runs m's tests
// with *bin set to its path, removes the directory, and returns the exit
// code for os.Exit. Call it from TestMain.
func Main(m *testing.M, bin *string) int {
	dir, err := os.MkdirTemp("", "weft-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	path, err := Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*bin = path
	return m.Run()
}

// Build compiles cmd/weft into dir and returns the binary's path. It runs
// the go command, which must be on PATH, from the test's working
// directory: any directory of the module will do.
func Build(dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the tests build weft with the go command: %w", err)
	}
	bin := filepath.Join(dir, "weft")
	build := exec.Command(goBin, "build", "-o", bin, "github.com/weftworks/weft/cmd/weft")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("building weft: %w", err)
	}
	return bin, nil
}

// Server is a running `weft serve`.
type Server struct {
	// URL is where the server listens, http://127.0.0.1:port.
	URL string
	bin string
	env []string
	cmd *exec.Cmd

	mu     sync.Mutex
	stderr bytes.Buffer
	exited chan error
}

// syncWriter lets the log be read while the process writes it.
type syncWriter struct{ s *Server }

func (w syncWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.stderr.Write(p)
}

// Log is what the server has written to stderr so far (JSON lines).
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// StartServer runs `bin serve` on a free loopback port, with env added to
// the test's environment and args after serve's own, and waits until it
// serves. The server is killed when the test ends, if still running, and
// its log is shown if the test failed.
func StartServer(t testing.TB, bin string, env []string, args ...string) *Server {
	t.Helper()
	s := &Server{bin: bin, env: env, exited: make(chan error, 1)}
	s.cmd = exec.Command(bin, append([]string{"serve", "--addr", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	s.cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	s.cmd.Stderr = pw
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := s.cmd.Wait()
		pw.Close()
		s.exited <- err
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			_, _ = syncWriter{s}.Write([]byte(line + "\n"))
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "weft: serving" {
				addr <- rec.Addr
			}
		}
		// Drain what is left (an over-long line), so the process never
		// blocks on a full pipe.
		_, _ = io.Copy(syncWriter{s}, pr)
	}()
	select {
	case s.URL = <-addr:
	case err := <-s.exited:
		t.Fatalf("weft serve exited (%v):\n%s", err, s.Log())
	case <-time.After(30 * time.Second):
		t.Fatalf("weft serve did not start:\n%s", s.Log())
	}
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.Log())
		}
	})
	return s
}

// PID is the server process's id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Stop sends sig and waits for the process to exit; it returns how the
// process ended (an *exec.ExitError unless it exited with status 0).
func (s *Server) Stop(t testing.TB, sig os.Signal) error {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.exited:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("weft serve did not exit after %v:\n%s", sig, s.Log())
	}
	return nil
}

// Result is how a CLI run ended.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs the CLI against s with stdin and returns its output and exit
// code.
func (s *Server) Run(t testing.TB, stdin string, args ...string) Result {
	t.Helper()
	cmd := s.Command(stdin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return Result{out.String(), errb.String(), code}
}

// Command is the CLI command for args, aimed at s (WEFT_SERVER) with the
// server's environment, reading stdin; the caller runs it.
func (s *Server) Command(stdin string, args ...string) *exec.Cmd {
	cmd := exec.Command(s.bin, args...)
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Env = append(cmd.Env, "WEFT_SERVER="+s.URL)
	cmd.Stdin = strings.NewReader(stdin)
	return cmd
}

// Must is Run for a command that must succeed; it returns the output.
func (s *Server) Must(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	r := s.Run(t, stdin, args...)
	if r.Code != 0 {
		t.Fatalf("weft %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}
