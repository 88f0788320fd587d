// Package faults is Weft's fault-injection suite: real processes on real
// databases (SQLite and PostgreSQL), broken on purpose, and the books
// checked afterwards. It holds only tests; this file exists for the
// package comment.
//
// The cases:
//
//   - Worker processes killed with SIGKILL at random moments, again and
//     again, while three of them drain a stream of tasks: no task may be
//     lost, none may have its outcome recorded twice, and the handlers'
//     own ledger shows how many executions the kills repeated (Weft runs
//     tasks at least once; it records each outcome exactly once).
//   - `weft serve` killed with SIGKILL while clients post batches: every
//     acknowledged batch must be stored in full, every other batch in full
//     or not at all, and a SQLite file must pass PRAGMA integrity_check.
//   - One of two worker nodes running with its clock an hour ahead of, or
//     behind, the other: leases stay safe (fenced by epoch, not by time),
//     and the tests record what the skew does to leases, rescue and
//     leadership.
//
// Worker processes are the test binary itself, re-executed by TestMain
// with WEFT_FAULTS_CHILD set; the server is the real weft binary, built by
// TestMain. By default the suite is sized to finish in about a minute and
// a half on two cores under -race; WEFT_FAULTS_LONG=1, or
// -faults.duration, runs the long variant (`make faults`). Run with -v to
// see the figures each case reports.
package faults
