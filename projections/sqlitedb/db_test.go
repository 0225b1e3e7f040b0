package sqlitedb

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCheckVersion(t *testing.T) {
	tests := []struct {
		version string
		ok      bool
	}{
		{"3.51.3", true},
		{"3.51.4", true},
		{"3.52.0", true},
		{"3.54.1", true},
		{"3.100.0", true}, // numeric, not lexical
		{"4.0.0", true},
		{"3.52", true}, // missing patch level is 0
		{"3.51.2", false},
		{"3.51.0", false},
		{"3.51", false},
		{"3.50.9", false},
		{"3.9.99", false},
		{"2.99.99", false},
		{"", false},
		{"3", false},
		{"3.51.x", false},
		{"3.51.3.1", false},
		{"v3.51.3", false},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			err := checkVersion(tt.version)
			if tt.ok {
				if err != nil {
					t.Fatalf("checkVersion(%q) = %v, want nil", tt.version, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("checkVersion(%q) = nil, want an error", tt.version)
			}
			if !strings.Contains(err.Error(), `"`+tt.version+`"`) && !strings.Contains(err.Error(), "SQLite "+tt.version+" is too old") {
				t.Fatalf("error %q does not say which version was found", err)
			}
		})
	}
}

func TestCheckVersionMessage(t *testing.T) {
	err := checkVersion("3.50.4")
	want := "SQLite 3.50.4 is too old: fazt needs 3.51.3 or newer"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("checkVersion = %v, want %q", err, want)
	}
}

func TestOpenChecksVersion(t *testing.T) {
	db := openTest(t)
	if err := checkVersion(db.SQLiteVersion); err != nil {
		t.Fatalf("Open accepted %s: %v", db.SQLiteVersion, err)
	}
}

// TestPragmas checks the DSN pragmas on the writer and on several reader
// connections held at once (so they are distinct connections).
func TestPragmas(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, func(db *DB) { db.Readers = 3 })
	want := map[string]string{
		"journal_mode": "wal",
		"synchronous":  "1",
		"foreign_keys": "0",
		"busy_timeout": "10000",
	}
	check := func(name string, conn *sql.Conn, extra map[string]string) {
		t.Helper()
		for p, w := range want {
			var got string
			if err := conn.QueryRowContext(ctx, "PRAGMA "+p).Scan(&got); err != nil {
				t.Fatalf("%s: PRAGMA %s: %v", name, p, err)
			}
			if got != w {
				t.Errorf("%s: PRAGMA %s = %s, want %s", name, p, got, w)
			}
		}
		for p, w := range extra {
			var got string
			if err := conn.QueryRowContext(ctx, "PRAGMA "+p).Scan(&got); err != nil {
				t.Fatalf("%s: PRAGMA %s: %v", name, p, err)
			}
			if got != w {
				t.Errorf("%s: PRAGMA %s = %s, want %s", name, p, got, w)
			}
		}
	}

	w, err := db.Writer.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	check("writer", w, map[string]string{"query_only": "0"})
	w.Close()

	var readers []*sql.Conn
	for i := 0; i < 3; i++ {
		c, err := db.Reader.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		readers = append(readers, c)
	}
	for i, c := range readers {
		check("reader "+string(rune('0'+i)), c, map[string]string{"query_only": "1"})
		c.Close()
	}
	if s := db.Writer.Stats(); s.MaxOpenConnections != 1 {
		t.Errorf("writer pool allows %d connections, want 1", s.MaxOpenConnections)
	}
	if s := db.Reader.Stats(); s.MaxOpenConnections != 3 {
		t.Errorf("reader pool allows %d connections, want 3", s.MaxOpenConnections)
	}
}

func TestBusyTimeout(t *testing.T) {
	db := openTest(t, func(db *DB) { db.BusyTimeout = 2500 * time.Millisecond })
	var got int
	if err := db.Reader.QueryRow("PRAGMA busy_timeout").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != 2500 {
		t.Fatalf("busy_timeout = %d, want 2500", got)
	}
}

// TestNewPresetsDefaults: New sets every tunable to its Default*
// constant, and those are what Open applies.
func TestNewPresetsDefaults(t *testing.T) {
	db := New(filepath.Join(t.TempDir(), "x.db"))
	if db.Readers != DefaultReaders || db.CheckpointInterval != DefaultCheckpointInterval || db.BusyTimeout != DefaultBusyTimeout {
		t.Fatalf("New: Readers %d, CheckpointInterval %v, BusyTimeout %v; want the defaults %d, %v, %v",
			db.Readers, db.CheckpointInterval, db.BusyTimeout, DefaultReaders, DefaultCheckpointInterval, DefaultBusyTimeout)
	}
	if err := db.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var busy int64
	if err := db.Reader.QueryRow("PRAGMA busy_timeout").Scan(&busy); err != nil || busy != DefaultBusyTimeout.Milliseconds() {
		t.Fatalf("busy_timeout = %d (%v), want %d", busy, err, DefaultBusyTimeout.Milliseconds())
	}
	if s := db.Reader.Stats(); s.MaxOpenConnections != DefaultReaders {
		t.Fatalf("reader pool allows %d connections, want %d", s.MaxOpenConnections, DefaultReaders)
	}
	if err := db.Open(context.Background()); err == nil || !strings.Contains(err.Error(), "opens once") {
		t.Fatalf("a second Open: %v, want a refusal", err)
	}
}

func TestOpenRejectsBadOptions(t *testing.T) {
	ctx := context.Background()
	for name, tc := range map[string]struct {
		path string
		tune func(*DB)
		want string
	}{
		"no readers":        {"x.db", func(db *DB) { db.Readers = 0 }, "at least one reader"},
		"no checkpoints":    {"x.db", func(db *DB) { db.CheckpointInterval = 0 }, "CheckpointInterval"},
		"empty path":        {"", nil, "empty path"},
		"missing directory": {filepath.Join("missing-dir", "x.db"), nil, "missing-dir"},
	} {
		t.Run(name, func(t *testing.T) {
			path := tc.path
			if path != "" {
				path = filepath.Join(t.TempDir(), path)
			}
			db := New(path)
			if tc.tune != nil {
				tc.tune(db)
			}
			err := db.Open(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v, want an error naming %q", err, tc.want)
			}
			if err := db.Close(); err != nil {
				t.Fatalf("Close after a failed Open: %v", err)
			}
		})
	}
}

// TestOpenPathIsNotAURI: characters that mean something in a URI stay
// part of the file name.
func TestOpenPathIsNotAURI(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "odd?name#x%41.db")
	db := New(path)
	if err := db.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not created under its literal name: %v", err)
	}
}

func TestReadersSeeCommittedWrites(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	mustMigrate(t, db, pageviewsV1())
	mustExec(t, db, InsertSQL(pageviewsV1()), "a", "/", 1)
	var n int
	if err := db.Reader.QueryRowContext(ctx, "SELECT count(*) FROM pageviews").Scan(&n); err != nil || n != 1 {
		t.Fatalf("reader sees %d rows (%v), want 1", n, err)
	}
}

// The writer never checkpoints; the background checkpointer copies the
// WAL into the database file while the writer keeps committing.
func TestBackgroundCheckpoint(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ckpt.db")
	db := New(path)
	db.CheckpointInterval = 20 * time.Millisecond
	if err := db.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var auto int
	if err := db.Writer.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&auto); err != nil || auto != 0 {
		t.Fatalf("writer wal_autocheckpoint = %d (%v); want 0", auto, err)
	}
	mustMigrate(t, db, pageviewsV1())
	before := fileSize(t, path)
	for i := 0; i < 300; i++ {
		mustExec(t, db, InsertSQL(pageviewsV1()), fmt.Sprint("id", i), strings.Repeat("/p", 200), i)
	}
	deadline := time.Now().Add(10 * time.Second)
	for fileSize(t, path) <= before {
		if time.Now().After(deadline) {
			t.Fatalf("the database file stayed at %d bytes: nothing checkpointed the WAL", before)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var n int
	if err := db.Reader.QueryRowContext(ctx, "SELECT count(*) FROM pageviews").Scan(&n); err != nil || n != 300 {
		t.Fatalf("reader sees %d rows (%v), want 300", n, err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}
