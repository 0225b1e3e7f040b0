package main

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

// Interrupted with a client on a live stream, serve stops cleanly: it
// returns nil (not the HTTP shutdown's missed deadline), the stream
// ends, and serve.json is gone. The kernel's own test covers what the
// client receives (TestCloseEndsLiveStreams).
func TestShutdownWithLiveClient(t *testing.T) {
	s := startServer(t, t.TempDir())
	req, err := http.NewRequest("GET", s.addr+"/v1/events/live?after=0", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("live: %d", resp.StatusCode)
	}
	if err := s.stop(t); err != nil {
		t.Fatalf("serve: %v\n%s", err, s.stderr)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatalf("the live stream did not end cleanly: %v", err)
	}
	if _, err := readState(s.dir); err == nil {
		t.Fatal("serve.json is still there after shutdown")
	}
}

// With --nats-listen, serve.json and the start message name the NATS
// listener, and NATS clients connect there.
func TestServeNamesNATSListener(t *testing.T) {
	s := startServer(t, t.TempDir(), "--nats-listen", "127.0.0.1:0")
	if !strings.HasPrefix(s.nats, "nats://127.0.0.1:") {
		t.Fatalf("serve.json nats = %q", s.nats)
	}
	waitFor(t, "the start message", func() bool { return strings.Contains(s.stdout.String(), "NATS listening on "+s.nats+"\n") })
	nc, err := nats.Connect(s.nats)
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
}
