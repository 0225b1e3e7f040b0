//go:build unix

package bench

import (
	"os"
	"runtime"
	"syscall"
)

// maxRSS converts ru_maxrss to bytes: kilobytes, except on Darwin.
func maxRSS(ru *syscall.Rusage) int64 {
	if runtime.GOOS == "darwin" || runtime.GOOS == "ios" {
		return int64(ru.Maxrss)
	}
	return int64(ru.Maxrss) << 10
}

func selfMaxRSS() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return maxRSS(&ru)
}

// exitedPeakRSS is a child's peak from its exit status.
func exitedPeakRSS(ps *os.ProcessState) int64 {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return maxRSS(ru)
	}
	return 0
}
