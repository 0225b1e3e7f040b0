package edge

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io/fs"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/eventlog/eventlogtest"
)

// kvStartNATS starts a real embedded NATS JetStream server, without a
// network listener, for tests that need several connections to one
// bucket: the nodes of a cluster, each with its own connection.
func kvStartNATS(t *testing.T) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		ServerName: "kvstorage-test",
		JetStream:  true,
		StoreDir:   t.TempDir(),
		DontListen: true,
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		t.Fatal("embedded nats did not become ready")
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

// kvTestNode is one node: its own connection to the server, its own
// KVStorage on the shared bucket.
type kvTestNode struct {
	nc *nats.Conn
	kv jetstream.KeyValue
	s  *KVStorage
}

func kvNewNode(t *testing.T, srv *server.Server, bucket string) *kvTestNode {
	t.Helper()
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateOrUpdateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: bucket, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	s := NewKVStorage(kv)
	s.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	return &kvTestNode{nc: nc, kv: kv, s: s}
}

func kvMustNotExist(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s: %v, want an error matching fs.ErrNotExist", what, err)
	}
}

// The behaviour certmagic expects of a Storage, on a bucket opened on a
// real event log: Store, Load, Delete, Exists, List (recursive and not),
// Stat, fs.ErrNotExist for what is missing.
func TestKVStorageBehaviour(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := eventlogtest.OpenDir(t, dir)
	s, err := OpenKVStorage(ctx, l, "certs_test")
	if err != nil {
		t.Fatal(err)
	}
	var syncs atomic.Int32
	logSync := s.Sync
	s.Sync = func() error { syncs.Add(1); return logSync() }

	// Nothing there yet.
	_, err = s.Load(ctx, "certificates/ca/a.example/a.example.crt")
	kvMustNotExist(t, "Load of a missing key", err)
	_, err = s.Stat(ctx, "certificates")
	kvMustNotExist(t, "Stat of a missing key", err)
	_, err = s.List(ctx, "certificates", true)
	kvMustNotExist(t, "List of a missing prefix", err)
	_, err = s.List(ctx, "", false)
	kvMustNotExist(t, "List of an empty bucket", err)
	if s.Exists(ctx, "certificates") {
		t.Error("Exists of a missing key: true")
	}
	if err := s.Delete(ctx, "certificates/ca"); err != nil {
		t.Errorf("Delete of a missing key: %v, want nil", err)
	}

	files := map[string]string{
		"certificates/ca/a.example/a.example.crt":    "cert a",
		"certificates/ca/a.example/a.example.key":    "key a",
		"certificates/ca/a.example/a.example.json":   `{"sans":["a.example"]}`,
		"certificates/ca/b.example/b.example.crt":    "cert b",
		"certificates/other/c.example/c.example.crt": "cert c",
		"acme/ca/users/me@a.example/me.json":         "account",
		"last_clean.json":                            "{}",
	}
	before := time.Now()
	for k, v := range files {
		if err := s.Store(ctx, k, []byte(v)); err != nil {
			t.Fatalf("Store %s: %v", k, err)
		}
	}
	after := time.Now()
	if n := syncs.Load(); n != int32(len(files)) {
		t.Errorf("Sync called %d times for %d stores", n, len(files))
	}
	for k, v := range files {
		got, err := s.Load(ctx, k)
		if err != nil || string(got) != v {
			t.Errorf("Load %s: %q, %v; want %q", k, got, err, v)
		}
		if !s.Exists(ctx, k) {
			t.Errorf("Exists %s: false", k)
		}
	}

	// Stat: a file's size and the time it was stored; a directory.
	info, err := s.Stat(ctx, "certificates/ca/a.example/a.example.key")
	if err != nil {
		t.Fatal(err)
	}
	if !info.IsTerminal || info.Size != int64(len("key a")) || info.Key != "certificates/ca/a.example/a.example.key" {
		t.Errorf("Stat of a file: %+v", info)
	}
	if info.Modified.Before(before) || info.Modified.After(after) {
		t.Errorf("Stat of a file: modified %v, stored between %v and %v", info.Modified, before, after)
	}
	info, err = s.Stat(ctx, "certificates/ca")
	if err != nil || info.IsTerminal || info.Key != "certificates/ca" {
		t.Errorf("Stat of a directory: %+v, %v", info, err)
	}
	if !s.Exists(ctx, "certificates/ca") || !s.Exists(ctx, "acme") {
		t.Error("Exists of a directory: false")
	}
	// A prefix that is not a whole name is not a directory.
	if s.Exists(ctx, "certificates/c") {
		t.Error(`Exists "certificates/c": true, but only "certificates/ca" exists`)
	}

	// Overwrite: the new value, size and time.
	time.Sleep(2 * time.Millisecond) // so that the stored time must differ
	if err := s.Store(ctx, "certificates/ca/a.example/a.example.key", []byte("a longer key a")); err != nil {
		t.Fatal(err)
	}
	info2, err := s.Stat(ctx, "certificates/ca/a.example/a.example.key")
	if err != nil || info2.Size != int64(len("a longer key a")) || !info2.Modified.After(info.Modified) {
		t.Errorf("Stat after overwrite: %+v, %v (before: %+v)", info2, err, info)
	}
	if got, _ := s.Load(ctx, "certificates/ca/a.example/a.example.key"); string(got) != "a longer key a" {
		t.Errorf("Load after overwrite: %q", got)
	}

	// List.
	for _, c := range []struct {
		prefix    string
		recursive bool
		want      []string
	}{
		{"certificates", false, []string{"certificates/ca", "certificates/other"}},
		{"certificates/ca", false, []string{"certificates/ca/a.example", "certificates/ca/b.example"}},
		{"certificates/ca/a.example", false, []string{"certificates/ca/a.example/a.example.crt", "certificates/ca/a.example/a.example.json", "certificates/ca/a.example/a.example.key"}},
		{"certificates/ca", true, []string{
			"certificates/ca/a.example", "certificates/ca/a.example/a.example.crt", "certificates/ca/a.example/a.example.json", "certificates/ca/a.example/a.example.key",
			"certificates/ca/b.example", "certificates/ca/b.example/b.example.crt",
		}},
		{"", false, []string{"acme", "certificates", "last_clean.json"}},
		{"last_clean.json", true, nil},
	} {
		got, err := s.List(ctx, c.prefix, c.recursive)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("List(%q, %v) = %q, %v; want %q", c.prefix, c.recursive, got, err, c.want)
		}
	}

	// Delete a directory: everything under it, nothing beside it.
	syncs.Store(0)
	if err := s.Delete(ctx, "certificates/ca/a.example"); err != nil {
		t.Fatal(err)
	}
	if n := syncs.Load(); n != 1 {
		t.Errorf("Sync called %d times for a Delete", n)
	}
	for _, k := range []string{"certificates/ca/a.example", "certificates/ca/a.example/a.example.crt"} {
		if s.Exists(ctx, k) {
			t.Errorf("Exists %s after Delete of its directory: true", k)
		}
	}
	_, err = s.Load(ctx, "certificates/ca/a.example/a.example.key")
	kvMustNotExist(t, "Load after Delete", err)
	if got, err := s.List(ctx, "certificates/ca", true); err != nil || !slices.Equal(got, []string{"certificates/ca/b.example", "certificates/ca/b.example/b.example.crt"}) {
		t.Errorf("List after Delete: %q, %v", got, err)
	}
	// Delete a file.
	if err := s.Delete(ctx, "last_clean.json"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Stat(ctx, "last_clean.json")
	kvMustNotExist(t, "Stat after Delete", err)
	if err := s.Delete(ctx, "last_clean.json"); err != nil {
		t.Errorf("Delete of a deleted key: %v", err)
	}

	// Concurrent stores of one key never mix values (certmagic's
	// FileStorage is held to the same).
	a, b := bytes.Repeat([]byte("a"), 64<<10), bytes.Repeat([]byte("b"), 64<<10)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			v := a
			if i%2 == 1 {
				v = b
			}
			if err := s.Store(ctx, "race", v); err != nil {
				t.Error(err)
			}
			got, err := s.Load(ctx, "race")
			if err != nil || (!bytes.Equal(got, a) && !bytes.Equal(got, b)) {
				t.Errorf("Load during concurrent Stores: %d bytes, %v", len(got), err)
			}
		})
	}
	wg.Wait()

	// A restart: the reopened log's bucket has what was stored, and not
	// what was deleted.
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenKVStorage(ctx, l, "certs_test"); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("OpenKVStorage on a closed log: %v, want ErrClosed", err)
	}
	s2, err := OpenKVStorage(ctx, eventlogtest.OpenDir(t, dir), "certs_test")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s2.Load(ctx, "certificates/ca/b.example/b.example.crt"); err != nil || string(got) != "cert b" {
		t.Errorf("Load after a restart: %q, %v", got, err)
	}
	want := []string{
		"certificates/ca", "certificates/ca/b.example", "certificates/ca/b.example/b.example.crt",
		"certificates/other", "certificates/other/c.example", "certificates/other/c.example/c.example.crt",
	}
	if got, err := s2.List(ctx, "certificates", true); err != nil || !slices.Equal(got, want) {
		t.Errorf("List after a restart: %q, %v; want %q", got, err, want)
	}
}

// Keys with characters a JetStream key refuses (dots, spaces, wildcards,
// '=', non-ASCII) are stored and listed back exactly; keys that differ
// only where a mapping could confuse them stay apart.
func TestKVStorageOddKeys(t *testing.T) {
	ctx := context.Background()
	s := kvNewNode(t, kvStartNATS(t), "odd").s
	odd := []string{
		"a.b",
		"a/b",
		"a=2Eb",
		"a=b",
		"a b/c\td",
		"*/>/x",
		"ünïcödé/日本",
		"../..",
		"./x",
		".hidden",
		"trailing.",
		"%41/%2e",
		"_/-/=/.",
		"$KV/x",
		"wildcard_.example.com/wildcard_.example.com.crt",
	}
	for i, k := range odd {
		if err := s.Store(ctx, k, []byte{byte(i)}); err != nil {
			t.Fatalf("Store %q: %v", k, err)
		}
	}
	for i, k := range odd {
		got, err := s.Load(ctx, k)
		if err != nil || !bytes.Equal(got, []byte{byte(i)}) {
			t.Errorf("Load %q: %v, %v; want [%d]", k, got, err, i)
		}
	}
	all, err := s.List(ctx, "", true)
	if err != nil {
		t.Fatal(err)
	}
	// Every stored key is listed, as it was stored (with its
	// directories, as the recursive list of a folder has them).
	for _, k := range odd {
		if !slices.Contains(all, k) {
			t.Errorf("List of everything lacks %q: %q", k, all)
		}
	}
	if got, err := s.List(ctx, "a", false); err != nil || !slices.Equal(got, []string{"a/b"}) {
		t.Errorf(`List("a") = %q, %v; want only "a/b" (not "a.b", "a=b" or "a=2Eb")`, got, err)
	}
	if got, err := s.List(ctx, "ünïcödé", false); err != nil || !slices.Equal(got, []string{"ünïcödé/日本"}) {
		t.Errorf("List of a non-ASCII directory = %q, %v", got, err)
	}
	// Deleting "a" removes "a/b" and leaves "a.b" and "a=b".
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if s.Exists(ctx, "a/b") || !s.Exists(ctx, "a.b") || !s.Exists(ctx, "a=b") || !s.Exists(ctx, "a=2Eb") {
		t.Error(`Delete("a") removed more or less than "a/b"`)
	}

	// Keys certmagic never makes are refused, and say why.
	for _, k := range []string{"", "/a", "a/", "a//b"} {
		if err := s.Store(ctx, k, []byte("x")); !errors.Is(err, eventlog.ErrInvalid) {
			t.Errorf("Store %q: %v, want ErrInvalid", k, err)
		}
		if _, err := s.Load(ctx, k); !errors.Is(err, eventlog.ErrInvalid) {
			t.Errorf("Load %q: %v, want ErrInvalid", k, err)
		}
	}
	// The mapping is reversible byte for byte.
	for _, k := range append(odd, "\x00\xff", "==", "=ZZ") {
		for _, name := range strings.Split(k, "/") {
			var b strings.Builder
			kvEscape(&b, name)
			back, ok := kvUnescape(b.String())
			if !ok || back != name {
				t.Errorf("escape(%q) = %q, unescapes to %q, %v", name, b.String(), back, ok)
			}
		}
	}
	for _, bad := range []string{"=", "=4", "=4G", "a=zz", ""} {
		if _, ok := kvUnescape(bad); ok {
			t.Errorf("unescape(%q) accepted a token no KVStorage writes", bad)
		}
	}
}

// A value larger than NATS takes in one message is refused with
// ErrInvalid, and nothing is stored.
func TestKVStorageValueTooLarge(t *testing.T) {
	ctx := context.Background()
	s, err := OpenKVStorage(ctx, eventlogtest.Open(t), "certs_big")
	if err != nil {
		t.Fatal(err)
	}
	err = s.Store(ctx, "big", make([]byte, 5<<20))
	if !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("Store of 5 MiB: %v, want ErrInvalid", err)
	}
	t.Log(err)
	_, err = s.Load(ctx, "big")
	kvMustNotExist(t, "Load of a refused value", err)
	// Under the limit is fine.
	if err := s.Store(ctx, "big", make([]byte, 1<<20)); err != nil {
		t.Fatalf("Store of 1 MiB: %v", err)
	}
}

// Two nodes, each with its own connection, and two goroutines on each,
// contend for one lock: never two inside at once, and every one gets in.
func TestKVStorageLockExcludes(t *testing.T) {
	srv := kvStartNATS(t)
	var nodes []*KVStorage
	for range 2 {
		n := kvNewNode(t, srv, "locks")
		n.s.LockPoll = 2 * time.Millisecond
		n.s.LockRefresh = 20 * time.Millisecond
		nodes = append(nodes, n.s)
	}
	const rounds = 25
	var inside, entered, overlaps atomic.Int32
	var wg sync.WaitGroup
	for _, s := range nodes {
		for range 2 {
			wg.Go(func() {
				ctx := context.Background()
				for range rounds {
					if err := s.Lock(ctx, "issue_cert_a.example"); err != nil {
						t.Error(err)
						return
					}
					if inside.Add(1) != 1 {
						overlaps.Add(1)
					}
					entered.Add(1)
					time.Sleep(time.Millisecond) // hold it long enough for the others to try
					inside.Add(-1)
					if err := s.Unlock(ctx, "issue_cert_a.example"); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	if n := overlaps.Load(); n != 0 {
		t.Errorf("%d times two holders were inside the lock at once", n)
	}
	if n := entered.Load(); n != 4*rounds {
		t.Errorf("%d entries into the lock, want %d", n, 4*rounds)
	}
}

// The behaviour certmagic's FileStorage is held to: with a cancelled
// context, Lock takes a free lock and fails on a held one; Unlock frees
// it. TryLock reports a held lock without waiting, and Lock gives up when
// its context ends while it waits.
func TestKVStorageLockContext(t *testing.T) {
	srv := kvStartNATS(t)
	a, b := kvNewNode(t, srv, "locks").s, kvNewNode(t, srv, "locks").s
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Lock(cancelled, "foo"); err != nil {
		t.Fatalf("Lock of a free lock with a cancelled context: %v", err)
	}
	if err := a.Lock(cancelled, "foo"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock of a held lock with a cancelled context: %v, want context.Canceled", err)
	}
	if ok, err := b.TryLock(context.Background(), "foo"); ok || err != nil {
		t.Fatalf("TryLock of a lock held on another node: %v, %v", ok, err)
	}
	waitCtx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Lock(waitCtx, "foo") }()
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock cancelled while waiting: %v", err)
	}
	if err := a.Unlock(cancelled, "foo"); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	if ok, err := b.TryLock(context.Background(), "foo"); !ok || err != nil {
		t.Fatalf("TryLock of a released lock: %v, %v", ok, err)
	}
	if err := b.Unlock(context.Background(), "foo"); err != nil {
		t.Fatal(err)
	}
	if err := b.Unlock(context.Background(), "foo"); err == nil {
		t.Fatal("Unlock of a lock not held: nil error")
	}
	// Different names do not exclude each other; a name with a slash is
	// one lock, not a directory of others.
	if err := a.Lock(cancelled, "x/y"); err != nil {
		t.Fatal(err)
	}
	if err := b.Lock(cancelled, "x"); err != nil {
		t.Fatalf("Lock of another name: %v", err)
	}
	// Tunables that cannot work are refused.
	bad := kvNewNode(t, srv, "locks").s
	bad.LockRefresh = bad.LockTTL
	if err := bad.Lock(context.Background(), "z"); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("Lock with LockRefresh = LockTTL: %v, want ErrInvalid", err)
	}
}

// A holder that stops refreshing (a dead or stalled node) loses its lock
// to a contender once the contender has seen it unchanged for LockTTL;
// the old holder then cannot release its successor's lock, and learns it
// lost it. A holder that keeps refreshing is never taken over.
func TestKVStorageStaleLockTakeover(t *testing.T) {
	srv := kvStartNATS(t)
	stalled, live, waiter := kvNewNode(t, srv, "locks"), kvNewNode(t, srv, "locks"), kvNewNode(t, srv, "locks")
	// The stalled holder refreshes so rarely that it never does here.
	stalled.s.LockRefresh, stalled.s.LockTTL = time.Hour, 2*time.Hour
	waiter.s.LockTTL, waiter.s.LockRefresh, waiter.s.LockPoll = 300*time.Millisecond, 50*time.Millisecond, 10*time.Millisecond
	ctx := context.Background()

	if err := stalled.s.Lock(ctx, "stale"); err != nil {
		t.Fatal(err)
	}
	if err := waiter.s.Lock(ctx, "stale"); err != nil {
		t.Fatalf("Lock of a stale lock: %v", err)
	}
	e, err := waiter.kv.Get(ctx, "l.stale")
	if err != nil {
		t.Fatal(err)
	}
	var rec kvLockRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil || rec.Owner != waiter.s.owner {
		t.Fatalf("the lock after takeover: %s, %v; want the waiter (%s) as owner", e.Value(), err, waiter.s.owner)
	}
	// The stalled holder wakes up and releases its lock: it learns it
	// lost it, and the new holder's lock stays in place.
	if err := stalled.s.Unlock(ctx, "stale"); !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("Unlock of a lock taken over: %v, want ErrConflict", err)
	}
	if ok, err := live.s.TryLock(ctx, "stale"); ok || err != nil {
		t.Fatalf("the new holder's lock after the old holder's Unlock: TryLock %v, %v; want held", ok, err)
	}
	if err := waiter.s.RenewLockLease(ctx, "stale", time.Minute); err != nil {
		t.Fatalf("RenewLockLease of a held lock: %v", err)
	}
	if err := waiter.s.Unlock(ctx, "stale"); err != nil {
		t.Fatal(err)
	}
	// Again, but the stalled holder wakes up to renew its lease first
	// (as certmagic does before each attempt to obtain): it learns it
	// lost the lock before doing the work again.
	if err := stalled.s.Lock(ctx, "stale"); err != nil {
		t.Fatal(err)
	}
	if err := waiter.s.Lock(ctx, "stale"); err != nil {
		t.Fatal(err)
	}
	if err := stalled.s.RenewLockLease(ctx, "stale", time.Minute); !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("RenewLockLease of a lock taken over: %v, want ErrConflict", err)
	}
	if err := stalled.s.Unlock(ctx, "stale"); !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("Unlock of a lock taken over: %v, want ErrConflict", err)
	}
	if err := waiter.s.Unlock(ctx, "stale"); err != nil {
		t.Fatal(err)
	}

	// TryLock never waits, but remembers what it saw: called again after
	// the lock stayed unchanged for LockTTL, it takes a stale lock over.
	if err := stalled.s.Lock(ctx, "try"); err != nil {
		t.Fatal(err)
	}
	if ok, err := waiter.s.TryLock(ctx, "try"); ok || err != nil {
		t.Fatalf("TryLock of a lock just taken: %v, %v", ok, err)
	}
	time.Sleep(waiter.s.LockTTL + 50*time.Millisecond) // the holder stays silent
	if ok, err := waiter.s.TryLock(ctx, "try"); !ok || err != nil {
		t.Fatalf("TryLock of a lock unchanged for LockTTL: %v, %v; want taken over", ok, err)
	}
	if err := waiter.s.Unlock(ctx, "try"); err != nil {
		t.Fatal(err)
	}
	if err := stalled.s.Unlock(ctx, "try"); !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("Unlock of a lock taken over by TryLock: %v, want ErrConflict", err)
	}

	// A dead node (its connection gone) holds a lock; two contenders on
	// two other nodes wait for it: one takes it over, and the other gets
	// it only after the first released it.
	dead := kvNewNode(t, srv, "locks")
	if err := dead.s.Lock(ctx, "dead"); err != nil {
		t.Fatal(err)
	}
	dead.nc.Close()
	other := kvNewNode(t, srv, "locks")
	other.s.LockTTL, other.s.LockRefresh, other.s.LockPoll = waiter.s.LockTTL, waiter.s.LockRefresh, waiter.s.LockPoll
	// Both contenders read the stale lock before either writes: only the
	// revision condition keeps the second from taking it over too.
	var takeovers atomic.Int32
	arrived, release := make(chan struct{}, 2), make(chan struct{})
	for _, n := range []*kvTestNode{waiter, other} {
		n.s.beforeTakeover = func() {
			if takeovers.Add(1) <= 2 {
				arrived <- struct{}{}
				<-release
			}
		}
	}
	go func() {
		<-arrived
		<-arrived
		close(release)
	}()
	var inside, overlaps atomic.Int32
	var wg sync.WaitGroup
	for _, n := range []*kvTestNode{waiter, other} {
		wg.Go(func() {
			if err := n.s.Lock(ctx, "dead"); err != nil {
				t.Error(err)
				return
			}
			if inside.Add(1) != 1 {
				overlaps.Add(1)
			}
			time.Sleep(20 * time.Millisecond) // hold it while the other may try
			inside.Add(-1)
			if err := n.s.Unlock(ctx, "dead"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := overlaps.Load(); n != 0 {
		t.Fatal("both contenders took the dead node's lock over at once")
	}
	if n := takeovers.Load(); n < 2 {
		t.Fatalf("%d contenders tried to take the stale lock over, want both", n)
	}
	waiter.s.beforeTakeover, other.s.beforeTakeover = nil, nil

	// A live holder, refreshing every 20ms, is not taken over by a
	// contender that waits past its LockTTL.
	live.s.LockRefresh = 20 * time.Millisecond
	if err := live.s.Lock(ctx, "live"); err != nil {
		t.Fatal(err)
	}
	waiter.s.LockTTL = 2 * time.Second // a hundred refreshes
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := waiter.s.Lock(wctx, "live"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock of a lock kept fresh: %v, want to wait until the deadline", err)
	}
	if err := live.s.Unlock(ctx, "live"); err != nil {
		t.Fatalf("Unlock by a live holder: %v", err)
	}
}

// kvMessageHook is a zap core that signals each log entry with a message.
type kvMessageHook struct {
	message string
	seen    chan<- struct{}
}

func (h *kvMessageHook) Enabled(zapcore.Level) bool        { return true }
func (h *kvMessageHook) With([]zapcore.Field) zapcore.Core { return h }
func (h *kvMessageHook) Sync() error                       { return nil }
func (h *kvMessageHook) Write(e zapcore.Entry, _ []zapcore.Field) error {
	if e.Message == h.message {
		select {
		case h.seen <- struct{}{}:
		default: // nobody waits for more
		}
	}
	return nil
}
func (h *kvMessageHook) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return ce.AddCore(e, h)
}

// The one-order property against a real ACME CA: an in-process Pebble,
// validating HTTP-01 challenges on loopback, with an in-process DNS
// server that points the test domain at 127.0.0.1. Two nodes, each a
// certmagic.Config with a real ACMEIssuer on its own KVStorage of one
// bucket, are asked for the same certificate at once: Pebble sees one
// order. Pebble holds that first order until both nodes have asked for
// the lock, so that without a working lock the second would order too.
// The challenge is answered by an HTTP server in front of both nodes'
// challenge handlers, from the challenge data in the shared bucket, as
// the edge's port 80 answers it.
func TestKVStorageOneACMEOrder(t *testing.T) {
	const domain = "one.kvstorage.fazt.test"
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpPort := httpLn.Addr().(*net.TCPAddr).Port
	asked := make(chan struct{}, 2)
	var orders atomic.Int32
	acme := kvStartPebble(t, kvStartDNS(t, domain), httpPort, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPost && r.URL.Path == "/order-plz" && orders.Add(1) == 1 {
			for range 2 {
				select {
				case <-asked:
				case <-r.Context().Done():
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})

	var cfgs []*certmagic.Config
	var issuers []*certmagic.ACMEIssuer
	srv := kvStartNATS(t)
	for range 2 {
		s := kvNewNode(t, srv, "certs").s
		s.LockPoll = 5 * time.Millisecond
		var cfg *certmagic.Config
		cache := certmagic.NewCache(certmagic.CacheOptions{
			GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return cfg, nil },
			Logger:           zap.NewNop(),
		})
		t.Cleanup(cache.Stop)
		cfg = certmagic.New(cache, certmagic.Config{
			Storage: s,
			Logger:  zap.New(&kvMessageHook{message: "acquiring lock", seen: asked}),
		})
		iss := certmagic.NewACMEIssuer(cfg, certmagic.ACMEIssuer{
			CA:                      acme.url,
			TestCA:                  acme.url,
			Email:                   "admin@kvstorage.fazt.test",
			Agreed:                  true,
			TrustedRoots:            acme.roots,
			DisableTLSALPNChallenge: true,
			ListenHost:              "127.0.0.1",
			AltHTTPPort:             httpPort,
			Logger:                  zap.NewNop(),
		})
		cfg.Issuers = []certmagic.Issuer{iss}
		cfgs, issuers = append(cfgs, cfg), append(issuers, iss)
	}
	// Port 80 of the cluster: either node's handler answers a challenge
	// either node presented.
	front := &http.Server{Handler: issuers[1].HTTPChallengeHandler(issuers[0].HTTPChallengeHandler(http.NotFoundHandler())), ReadHeaderTimeout: 10 * time.Second}
	go front.Serve(httpLn)
	t.Cleanup(func() { front.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for _, cfg := range cfgs {
		wg.Go(func() {
			if err := cfg.ObtainCertSync(ctx, domain); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := orders.Load(); n != 1 {
		t.Fatalf("Pebble saw %d orders for one name asked of two nodes at once, want 1", n)
	}
	// Both nodes load the one certificate, issued by Pebble for the name.
	var hashes []string
	for i, cfg := range cfgs {
		cert, err := cfg.CacheManagedCertificate(ctx, domain)
		if err != nil {
			t.Fatalf("node %d: the certificate from the bucket: %v", i, err)
		}
		if cert.Leaf == nil || !slices.Contains(cert.Leaf.DNSNames, domain) || !strings.Contains(cert.Leaf.Issuer.CommonName, "Pebble") {
			t.Fatalf("node %d: certificate for %v, want %s from Pebble", i, cert.Names, domain)
		}
		hashes = append(hashes, cert.Hash())
	}
	if hashes[0] != hashes[1] {
		t.Fatal("the two nodes serve different certificates")
	}
	// Asked again, neither node orders: the certificate is in the bucket.
	for _, cfg := range cfgs {
		if err := cfg.ObtainCertSync(ctx, domain); err != nil {
			t.Fatal(err)
		}
	}
	if n := orders.Load(); n != 1 {
		t.Fatalf("Pebble saw %d orders after asking again, want still 1", n)
	}
}

// kvPebble is an in-process Pebble ACME CA.
type kvPebble struct {
	url   string         // the ACME directory
	roots *x509.CertPool // trusts the directory's HTTPS server
}

// kvStartPebble starts Pebble on a loopback HTTPS server, validating
// HTTP-01 challenges on httpPort of the addresses dnsAddr gives. gate
// sees each request to Pebble before Pebble does.
func kvStartPebble(t *testing.T, dnsAddr string, httpPort int, gate func(http.ResponseWriter, *http.Request, http.Handler)) *kvPebble {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")
	logger := log.New(t.Output(), "pebble ", 0)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	validator := va.New(logger, httpPort, 0, false, dnsAddr, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	next := front.Handler()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { gate(w, r, next) }))
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	return &kvPebble{url: srv.URL + wfe.DirectoryPath, roots: roots}
}

// kvStartDNS starts a DNS server on loopback TCP (Pebble asks over TCP)
// that answers A queries for domain with 127.0.0.1, and nothing else.
func kvStartDNS(t *testing.T, domain string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			if q.Qtype == dns.TypeA && strings.EqualFold(q.Name, dns.Fqdn(domain)) {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.IPv4(127, 0, 0, 1)})
			}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}
