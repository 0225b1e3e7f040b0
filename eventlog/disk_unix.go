//go:build linux || darwin || freebsd

package eventlog

import "syscall"

// freeBytes is the space available to unprivileged users on dir's file
// system.
func freeBytes(dir string) (uint64, bool) {
	var st syscall.Statfs_t
	if dir == "" || syscall.Statfs(dir, &st) != nil {
		return 0, false
	}
	return uint64(st.Bavail) * uint64(st.Bsize), true
}
