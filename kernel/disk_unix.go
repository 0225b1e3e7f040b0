//go:build linux || darwin || freebsd

package kernel

import "syscall"

// freeBytes is the space available to unprivileged users on dir's file
// system.
func freeBytes(dir string) (uint64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return uint64(st.Bavail) * uint64(st.Bsize), true
}

// writable tells whether the process may create files in dir, asking
// the system (access(2)) rather than trying, so that checking writes
// nothing.
func writable(dir string) error {
	const wOK = 2 // W_OK
	return syscall.Access(dir, wOK)
}
