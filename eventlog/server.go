package eventlog

import (
	"crypto/rand"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startEmbedded starts a NATS server with JetStream file storage under
// dir, the way NATS's own tests embed it. It listens on the network only
// when listen is set ("127.0.0.1:4222").
func startEmbedded(dir, listen string, writable bool, d Durability, syncInterval time.Duration, maxStore int64, writerPass, readerPass string) (*server.Server, error) {
	// Two users: the log's own connection, the only one that may publish
	// events, and a reader for everything else in the process (consumers,
	// inspection). A listener's clients are the reader too unless the
	// caller asked for an open listener (see Log.ListenWritable).
	readOnly := &server.Permissions{Publish: &server.SubjectPermission{Deny: []string{subjectPrefix + ">"}}}
	opts := &server.Options{
		Users: []*server.User{
			{Username: writerUser, Password: writerPass},
			{Username: readerUser, Password: readerPass, Permissions: readOnly},
			{Username: openUser, Password: rand.Text()},
		},
		ServerName: "fazt",
		JetStream:  true,
		StoreDir:   dir, // the server keeps its files in dir/jetstream
		NoLog:      true,
		NoSigs:     true,
		MaxPayload: 4 << 20,
		DontListen: listen == "",
		// A deliberate limit: left at 0, JetStream would cap itself at 75%
		// of the space free at start and never look again.
		JetStreamMaxStore: maxStore,
	}
	// Strict logs fsync each group of appends themselves (see blockSyncer),
	// so the server never fsyncs per message.
	if d == Relaxed {
		opts.SyncInterval = syncInterval
	}
	if listen != "" {
		opts.NoAuthUser = readerUser
		if writable {
			opts.NoAuthUser = openUser
		}
		host, port, err := net.SplitHostPort(listen)
		if err != nil {
			return nil, fmt.Errorf("nats listen address %q: %w", listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return nil, fmt.Errorf("nats listen address %q: bad port", listen)
		}
		opts.Host, opts.Port = host, p
		if p == 0 {
			opts.Port = server.RANDOM_PORT
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats did not become ready within 30s (store %s)", opts.StoreDir)
	}
	return srv, nil
}

// The embedded server's users.
const (
	writerUser = "fazt-log"
	readerUser = "fazt-reader"
	openUser   = "fazt-open" // a writable listener's clients
)
