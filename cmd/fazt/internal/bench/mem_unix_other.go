//go:build unix && !linux

package bench

// Elsewhere the peak is the process's since it started (getrusage), and
// a child's is read from its exit status.

func rssSource() string {
	return "getrusage maxrss: the process's peak since it started, not reset per scenario; start-up: the child's, at exit"
}

func resetPeak() {}

func peakRSS() int64 { return selfMaxRSS() }

func childPeakRSS(int) int64 { return 0 }

func loadAverage() string { return "" }
