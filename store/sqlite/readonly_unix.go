//go:build unix

package sqlite

import (
	"errors"
	"syscall"
)

// readOnlyDir reports whether dir is on a read-only file system.
func readOnlyDir(dir string) bool {
	const wOK = 2
	return errors.Is(syscall.Access(dir, wOK), syscall.EROFS)
}
