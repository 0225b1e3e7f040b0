package backup

// ProjectionReplicaURL is projectionReplicaURL, for the tests.
var ProjectionReplicaURL = projectionReplicaURL
