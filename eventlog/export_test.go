package eventlog

import (
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// AckForTest exposes parseAck to the external tests.
type AckForTest struct {
	Seq       uint64
	Duplicate bool
	Err       error
}

func ParseAckForTest(data []byte, n int) AckForTest {
	a := parseAck(data, n)
	return AckForTest{Seq: a.seq, Duplicate: a.duplicate, Err: a.err}
}

// IssueForTest issues a node certificate valid for validity.
func IssueForTest(ca *ClusterCA, node string, validity time.Duration) ([]byte, []byte, error) {
	return ca.issue(node, nil, validity)
}

// WarnClusterForTest logs what Open warns of for c.
func WarnClusterForTest(c *Cluster, logger *slog.Logger) { c.warn(logger) }

// RenderClusterForTest exposes the configuration a cluster node renders.
func RenderClusterForTest(c *Cluster, d Durability) string { return c.render(d, DefaultSyncInterval) }

// PublishConnForTest is the connection the log publishes on, which may
// call JetStream's API (the tests ask the stream's leader to step down).
func (l *Log) PublishConnForTest() *nats.Conn { return l.nc }
