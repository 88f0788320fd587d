// Package resilience holds Weft's reliability tests: what happens to a
// running client when its database misbehaves, and whether it stays flat
// under hours of mixed load. It has no code of its own; the tests are in
// package resilience_test.
//
//   - TestPostgresRestart restarts a private PostgreSQL server (fast and
//     immediate shutdowns) under continuous enqueueing and work, and checks
//     that every acknowledged task completes exactly once and that work
//     resumes. It starts its own server from the PostgreSQL binaries
//     (/usr/lib/postgresql/*/bin, or WEFT_TEST_PG_BINDIR), never the shared
//     one other packages test against, and skips when there are none
//     (fails under CI). Its subtest claim-epoch-after-crash crashes the
//     server right after an asynchronous claim and checks that the lost
//     claim's epoch is never handed out again.
//   - TestSQLiteDiskFull and TestSQLiteReadOnly put a SQLite store on a
//     tiny tmpfs (and, for a filesystem that turns read-only under a
//     running store, on an ext4 image mounted with errors=remount-ro). They
//     need root and mount(2); where mounting is not permitted they skip.
//   - TestSoak runs a mixed load (successes, retries, failures, delayed
//     tasks, cancels of pending and running tasks, a backlogged slow queue,
//     retention) and samples memory, goroutines and enqueue-to-start
//     latency every second. It runs for 15s by default; WEFT_SOAK sets the
//     duration (`make soak` runs 10 minutes) and WEFT_SOAK_OUT names a file
//     to copy the per-second CSV to.
//
// The tests do not run in parallel with each other: they measure timing and
// memory, which a neighbour's load would blur.
package resilience
