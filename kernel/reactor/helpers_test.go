package reactor_test

import (
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/fazt-sh/fazt/eventlog/eventlogtest"
)

// openLog starts a real embedded log in a temp dir, closed at cleanup.
var openLog = eventlogtest.Open

// publishPoison publishes a message that is not an event on subject,
// around the log, and returns its sequence.
func publishPoison(tb testing.TB, nc *nats.Conn, subject string) uint64 {
	return eventlogtest.PublishAround(tb, nc, subject, nil, `{"x":1}`)
}
