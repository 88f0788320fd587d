//go:build !unix

package sqlite

// readOnlyDir reports whether dir is on a read-only file system; without
// access(2) SQLite's own error has to do.
func readOnlyDir(string) bool { return false }
