//go:build !(linux || darwin || freebsd)

package kernel

func freeBytes(string) (uint64, bool) { return 0, false }

// writable cannot tell here without writing: it assumes so.
func writable(string) error { return nil }
