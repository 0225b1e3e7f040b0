package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// On Linux each scenario's peak is VmHWM, reset before the scenario by
// writing 5 to /proc/self/clear_refs; where that is refused, VmHWM is
// the process's peak since it started (and getrusage's, without /proc).
var hwmReset = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil

func rssSource() string {
	if hwmReset {
		return "VmHWM (/proc), reset before each scenario; start-up: the child's VmHWM when ready"
	}
	return "VmHWM (/proc), which could not be reset: the process's peak since it started; start-up: the child's VmHWM when ready"
}

func resetPeak() {
	if hwmReset {
		os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	}
}

func peakRSS() int64 {
	if v := vmHWM("self"); v > 0 {
		return v
	}
	return selfMaxRSS()
}

func childPeakRSS(pid int) int64 { return vmHWM(strconv.Itoa(pid)) }

// vmHWM reads the VmHWM line of /proc/<pid>/status, in bytes.
func vmHWM(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var kb int64
		if n, _ := fmt.Sscanf(sc.Text(), "VmHWM: %d kB", &kb); n == 1 {
			return kb << 10
		}
	}
	return 0
}

// loadAverage is the 1-minute load average.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := bytes.Fields(b); err == nil && len(f) > 0 {
		return string(f[0])
	}
	return ""
}
