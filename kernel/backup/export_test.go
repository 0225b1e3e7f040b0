package backup

import "github.com/benbjohnson/litestream"

// SetCheckpointPages lowers Litestream's checkpoint thresholds (in
// pages) for the databases the package replicates, so a test reaches
// them with a small workload; the returned func puts them back.
func SetCheckpointPages(minPages, truncatePages int) (restore func()) {
	prev := tuneDB
	tuneDB = func(db *litestream.DB) {
		db.MinCheckpointPageN, db.TruncatePageN = minPages, truncatePages
	}
	return func() { tuneDB = prev }
}

// ProjectionReplicaURL is projectionReplicaURL, for the tests.
var ProjectionReplicaURL = projectionReplicaURL
