//go:build race

package projections_test

// raceEnabled shrinks the largest tests: the race detector makes them
// several times slower without finding more.
const raceEnabled = true
