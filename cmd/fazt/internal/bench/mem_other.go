//go:build !unix

package bench

import "os"

func rssSource() string { return "unavailable on this system" }

func resetPeak() {}

func peakRSS() int64 { return 0 }

func childPeakRSS(int) int64 { return 0 }

func exitedPeakRSS(*os.ProcessState) int64 { return 0 }

func loadAverage() string { return "" }
