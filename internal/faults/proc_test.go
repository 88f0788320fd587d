package faults_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/weftworks/weft"
)

// A worker process is this test binary, re-executed with envChild set; the
// rest of its configuration comes in the environment too.
const (
	envChild   = "WEFT_FAULTS_CHILD"
	envBackend = "WEFT_FAULTS_BACKEND"
	envDB      = "WEFT_FAULTS_DB"
	envLedger  = "WEFT_FAULTS_LEDGER"
	envNode    = "WEFT_FAULTS_NODE"
	envLease   = "WEFT_FAULTS_LEASE"
	envRescue  = "WEFT_FAULTS_RESCUE"
	envWorkers = "WEFT_FAULTS_WORKERS"
	envSkew    = "WEFT_FAULTS_SKEW"
)

// ledgerArgs are the arguments of the tasks worker processes run.
type ledgerArgs struct {
	N int `json:"n"`
}

// ledgerKind is the kind worker processes run.
const ledgerKind = "faults.ledger"

func (ledgerArgs) Kind() string { return ledgerKind }

// Commands a worker process reads on stdin. Each arms the next handler to
// finish its ledger write: hold then announces "held <id> <attempt>" and
// waits to be killed, inside the handler; mark announces "marked <id>
// <attempt>" and returns, so that a kill at once lands while the outcome
// is being recorded.
const (
	armNone int32 = iota
	armHold
	armMark
)

// childMain runs a worker process: it works ledgerKind tasks, appending
// each executed task's id to its ledger file, until SIGTERM stops it
// gracefully (or SIGKILL does not). It prints "ready" once started. It
// returns the exit code.
func childMain() int {
	if err := runWorker(); err != nil {
		fmt.Fprintln(os.Stderr, "faults worker:", err)
		return 1
	}
	return 0
}

func runWorker() error {
	env := func(name string) time.Duration {
		d, _ := time.ParseDuration(os.Getenv(name))
		return d
	}
	workers, _ := strconv.Atoi(os.Getenv(envWorkers))
	skew := env(envSkew)
	now := func() time.Time { return time.Now().Add(skew) }
	// JSON on stderr, which the test keeps in a file per process: the
	// test counts the outcomes the lease fence refused.
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx := context.Background()
	st, err := openStore(ctx, os.Getenv(envBackend), os.Getenv(envDB), now, log)
	if err != nil {
		return err
	}
	defer st.Close()
	ledger, err := os.OpenFile(os.Getenv(envLedger), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer ledger.Close()

	var (
		arm   atomic.Int32
		outMu sync.Mutex
	)
	say := func(format string, a ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Printf(format+"\n", a...)
	}
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			switch sc.Text() {
			case "hold":
				arm.Store(armHold)
			case "mark":
				arm.Store(armMark)
			}
		}
	}()
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, t *weft.Task[ledgerArgs]) error {
		// 0-5 ms of work, so that kills find handlers at every stage.
		time.Sleep(rand.N(5 * time.Millisecond))
		// One write(2) of a whole line to an O_APPEND file: a kill cannot
		// leave half a line, and no fsync is needed since the process,
		// not the machine, is what dies.
		if _, err := ledger.Write([]byte(t.ID + "\n")); err != nil {
			return err
		}
		switch arm.Swap(armNone) {
		case armHold:
			say("held %s %d", t.ID, t.Attempt)
			select {
			case <-ctx.Done():
			case <-time.After(30 * time.Second):
			}
		case armMark:
			say("marked %s %d", t.ID, t.Attempt)
		}
		return nil
	})
	lease := env(envLease)
	c, err := weft.NewClient(st, &weft.Config{
		NodeID:         os.Getenv(envNode),
		Workers:        ws,
		Queues:         map[string]weft.QueueConfig{"default": {MaxWorkers: workers}},
		LeaseTTL:       lease,
		RescueInterval: env(envRescue),
		// What remains is a poll safety net; wakeups do the real work.
		PollInterval: lease,
		Logger:       log,
	})
	if err != nil {
		return err
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	if err := c.Start(ctx); err != nil {
		return err
	}
	say("ready")
	<-term
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return c.Stop(stopCtx)
}

// workerSpec configures the worker processes of one test.
type workerSpec struct {
	backend string
	db      string
	dir     string // where ledgers and logs go
	lease   time.Duration
	rescue  time.Duration
	workers int
	skew    time.Duration
}

// proc is a worker process as the test sees it.
type proc struct {
	node   string
	ledger string
	log    string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string   // what it prints after "ready"
	ready  chan struct{} // closed when it printed "ready"
	exited chan struct{} // closed when it has exited
	err    error         // how it exited, once exited is closed
}

// startWorker starts a worker process named node; it does not wait for it
// to be ready.
func startWorker(t *testing.T, spec workerSpec, node string) *proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{
		node:   node,
		ledger: filepath.Join(spec.dir, "ledger-"+node),
		log:    filepath.Join(spec.dir, "log-"+node),
		lines:  make(chan string, 16),
		ready:  make(chan struct{}),
		exited: make(chan struct{}),
	}
	logFile, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the process has its own descriptor
	p.cmd = exec.Command(exe, "-test.run=^$")
	p.cmd.Env = append(os.Environ(), envChild+"=worker", envBackend+"="+spec.backend, envDB+"="+spec.db,
		envLedger+"="+p.ledger, envNode+"="+node, envLease+"="+spec.lease.String(),
		envRescue+"="+spec.rescue.String(), envWorkers+"="+strconv.Itoa(spec.workers), envSkew+"="+spec.skew.String())
	p.cmd.Stderr = logFile
	pr, pw := io.Pipe()
	p.cmd.Stdout = pw
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start worker process %s: %v", node, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		pw.Close()
		close(p.exited)
	}()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if sc.Text() == "ready" {
				close(p.ready)
				continue
			}
			select {
			case p.lines <- sc.Text():
			default: // nobody asked: markers only come when armed
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	t.Cleanup(p.kill)
	return p
}

// waitReady waits until p is ready, or fails the test.
func (p *proc) waitReady(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-p.ready:
	case <-p.exited:
		t.Fatalf("worker process %s exited before it was ready (%v); log %s:\n%s", p.node, p.err, p.log, tail(p.log))
	case <-time.After(within):
		t.Fatalf("worker process %s not ready after %s; log %s:\n%s", p.node, within, p.log, tail(p.log))
	}
}

func (p *proc) isReady() bool {
	select {
	case <-p.ready:
		return true
	default:
		return false
	}
}

// kill ends p with SIGKILL, if it still runs, and waits for it.
func (p *proc) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// armedKill arms p's next handler with cmd ("hold" or "mark"), waits up to
// within for its announcement, and kills p delay after it comes; without
// one (no work came) it kills p anyway. It returns the announcement.
func (p *proc) armedKill(cmd string, within, delay time.Duration) (marker, bool) {
	defer p.kill()
	if !p.arm(cmd) {
		return marker{}, false
	}
	return p.await(within, delay)
}

// arm sends cmd to p; false if p is gone.
func (p *proc) arm(cmd string) bool {
	_, err := io.WriteString(p.stdin, cmd+"\n")
	return err == nil
}

// await waits up to within for p's announcement of an armed handler and
// kills p delay after it comes. Without one, p is left running.
func (p *proc) await(within, delay time.Duration) (marker, bool) {
	select {
	case line := <-p.lines:
		// Killed before the line is parsed: with delay 0, the kill lands
		// as soon after the announcement as the test can manage.
		if delay > 0 {
			time.Sleep(delay)
		}
		p.kill()
		f := strings.Fields(line)
		if len(f) != 3 {
			return marker{}, false
		}
		attempt, _ := strconv.Atoi(f[2])
		return marker{node: p.node, task: f[1], attempt: attempt}, true
	case <-p.exited:
	case <-time.After(within):
	}
	return marker{}, false
}

// stop ends p gracefully with SIGTERM and returns how it exited.
func (p *proc) stop(t *testing.T) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.err
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.err
	case <-time.After(30 * time.Second):
		t.Fatalf("worker process %s did not stop after SIGTERM", p.node)
		return nil
	}
}

// checkExits fails the test for every process of ps that exited on its
// own with an error: the test ends them with SIGKILL or SIGTERM only.
func checkExits(t *testing.T, ps []*proc) {
	t.Helper()
	for _, p := range ps {
		select {
		case <-p.exited:
		default:
			continue
		}
		var ee *exec.ExitError
		if p.err != nil && (!errors.As(p.err, &ee) || !ee.ProcessState.Sys().(syscall.WaitStatus).Signaled()) {
			t.Errorf("worker process %s exited by itself: %v; log %s:\n%s", p.node, p.err, p.log, tail(p.log))
		}
	}
}

// marker is a task a worker process announced when armed.
type marker struct {
	node    string
	task    string
	attempt int
}

// tail is the end of a log file, for failure messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// countLog counts the lines of the log files that carry msg.
func countLog(t *testing.T, paths []string, msg string) int {
	t.Helper()
	n := 0
	needle := `"msg":"` + msg + `"`
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		n += strings.Count(string(b), needle)
	}
	return n
}
