package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/projections/sqlitedb"
)

// rawJS is a bare embedded NATS server with a stream configured like the
// log's, and nothing of the kernel on top: the raw ingredient.
type rawJS struct {
	srv *server.Server
	nc  *nats.Conn
	js  jetstream.JetStream
}

// startRaw starts the server with its store in dir. syncAlways makes
// JetStream fsync every message (the raw form of strict durability);
// otherwise it fsyncs every eventlog.DefaultSyncInterval, as a relaxed
// log does.
func startRaw(ctx context.Context, dir string, syncAlways bool) (*rawJS, error) {
	opts := &server.Options{JetStream: true, StoreDir: dir, DontListen: true, NoLog: true, NoSigs: true, MaxPayload: 4 << 20, SyncAlways: syncAlways}
	if !syncAlways {
		opts.SyncInterval = eventlog.DefaultSyncInterval
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("raw nats: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("raw nats did not become ready")
	}
	r := &rawJS{srv: srv}
	if r.nc, err = nats.Connect("", nats.InProcessServer(srv)); err != nil {
		r.close()
		return nil, fmt.Errorf("raw nats: %w", err)
	}
	if r.js, err = jetstream.New(r.nc); err != nil {
		r.close()
		return nil, err
	}
	_, err = r.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "RAW", Subjects: []string{"raw.>"}, Storage: jetstream.FileStorage,
		MaxMsgs: -1, MaxBytes: -1, DenyDelete: true, DenyPurge: true, AllowDirect: true,
	})
	if err != nil {
		r.close()
		return nil, fmt.Errorf("raw stream: %w", err)
	}
	return r, nil
}

func (r *rawJS) close() {
	if r.nc != nil {
		r.nc.Close()
	}
	r.srv.Shutdown()
	r.srv.WaitForShutdown()
}

// orderedReplay reads the n events of the log's bench category with a
// JetStream ordered consumer, the raw way to replay a stream, and parses
// each one's key as Apply does. It returns the keys in order.
func orderedReplay(ctx context.Context, l *eventlog.Log, n int) (sample, []string, error) {
	js, err := jetstream.New(l.Conn())
	if err != nil {
		return sample{}, nil, err
	}
	keys := make([]string, 0, n)
	start := time.Now()
	c, err := js.OrderedConsumer(ctx, eventlog.DefaultStreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{eventlog.CategorySubject("bench")}})
	if err != nil {
		return sample{}, nil, fmt.Errorf("ordered consumer: %w", err)
	}
	it, err := c.Messages()
	if err != nil {
		return sample{}, nil, err
	}
	defer it.Stop()
	for len(keys) < n {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return sample{}, nil, fmt.Errorf("ordered replay after %d messages: %w", len(keys), err)
		}
		k, err := keyOf(m.Data())
		if err != nil {
			return sample{}, nil, err
		}
		keys = append(keys, k)
	}
	return sample{ops: n, elapsed: time.Since(start)}, keys, nil
}

// rawInsert writes the counting rows for keys into a new SQLite file at
// path, projections.DefaultBatchSize per transaction, as the runner
// batches them, with the statement prepared once per transaction as a
// careful loader would. The latency of the sample is per transaction.
func rawInsert(ctx context.Context, path string, keys []string) (sample, error) {
	start := time.Now()
	db := sqlitedb.New(path)
	if err := db.Open(ctx); err != nil {
		return sample{}, err
	}
	defer db.Close()
	if err := sqlitedb.Migrate(ctx, db, countsTable); err != nil {
		return sample{}, err
	}
	s := sample{ops: len(keys)}
	for len(keys) > 0 {
		t := time.Now()
		k := min(len(keys), projections.DefaultBatchSize)
		tx, err := db.Writer.BeginTx(ctx, nil)
		if err != nil {
			return s, err
		}
		st, err := tx.PrepareContext(ctx, upsertSQL)
		if err != nil {
			tx.Rollback()
			return s, err
		}
		for _, key := range keys[:k] {
			if _, err := st.ExecContext(ctx, key); err != nil {
				tx.Rollback()
				return s, err
			}
		}
		if err := tx.Commit(); err != nil {
			return s, err
		}
		keys = keys[k:]
		s.lat = append(s.lat, time.Since(t))
	}
	s.elapsed = time.Since(start)
	return s, nil
}
