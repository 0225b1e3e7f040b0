package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/projections/sqlitedb"
	"github.com/fazt-sh/fazt/schemas"
)

// The test binary's projection: how many orders.created events each
// stream holds.
func init() {
	testVerticals = append(testVerticals, func(k *kernel.Kernel) error {
		return k.RegisterProjection(projections.Projection{
			Name:    "orders_total",
			Version: 1,
			Tables: []schemas.Table{{Name: "totals", Columns: []schemas.Column{
				{Name: "stream", Type: "TEXT", PrimaryKey: true},
				{Name: "n", Type: "INTEGER", NotNull: true, Default: "0"},
			}}},
			Filter: eventlog.Filter{Types: []string{"orders.created"}},
			Apply: func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO totals (stream, n) VALUES (?, 1)
					ON CONFLICT (stream) DO UPDATE SET n = n + 1`, e.Stream)
				return err
			},
		})
	})
}

func TestProjectionsHTTP(t *testing.T) {
	s := startServer(t, t.TempDir())
	s.appendJSON(t, `{"events":[{"stream":"orders.1","type":"orders.created","data":{}}]}`)
	res := s.appendJSON(t, `{"events":[{"stream":"orders.1","type":"orders.created","data":{}},{"stream":"orders.2","type":"orders.created","data":{}},{"stream":"stock.1","type":"stock.reserved","data":{}}]}`)

	body := `{"projection":"orders_total","sql":"SELECT stream, n FROM totals WHERE n >= ? ORDER BY stream","args":[1],"min_seq":` + jsonUint(res.LastSeq) + `}`
	status, resp, _ := s.do(t, "POST", "/v1/query", strings.NewReader(body), nil)
	if status != http.StatusOK {
		t.Fatalf("query: %d %s", status, resp)
	}
	var q struct {
		Columns   []string `json:"columns"`
		Rows      [][]any  `json:"rows"`
		Truncated bool     `json:"truncated"`
		Seq       uint64   `json:"seq"`
	}
	if err := json.Unmarshal([]byte(resp), &q); err != nil {
		t.Fatal(err)
	}
	if strings.Join(q.Columns, ",") != "stream,n" || q.Truncated || q.Seq < res.LastSeq {
		t.Fatalf("query answer %s", resp)
	}
	if got, _ := json.Marshal(q.Rows); string(got) != `[["orders.1",2],["orders.2",1]]` {
		t.Fatalf("rows %s; want orders.1: 2, orders.2: 1", got)
	}

	// max_rows truncates.
	status, resp, _ = s.do(t, "POST", "/v1/query", strings.NewReader(`{"projection":"orders_total","sql":"SELECT * FROM totals","max_rows":1}`), nil)
	if status != http.StatusOK || !strings.Contains(resp, `"truncated":true`) {
		t.Fatalf("truncated query: %d %s", status, resp)
	}

	// Listing and one status.
	status, resp, _ = s.do(t, "GET", "/v1/projections", nil, nil)
	var list struct {
		Projections []projections.Status `json:"projections"`
	}
	if status != http.StatusOK || json.Unmarshal([]byte(resp), &list) != nil {
		t.Fatalf("list: %d %s", status, resp)
	}
	var listed *projections.Status
	for i, p := range list.Projections {
		if p.Name == "orders_total" {
			listed = &list.Projections[i]
		}
	}
	if listed == nil || listed.Seq < res.LastSeq {
		t.Fatalf("list: %s", resp)
	}
	status, resp, _ = s.do(t, "GET", "/v1/projections/orders_total", nil, nil)
	if status != http.StatusOK || !strings.Contains(resp, `"name":"orders_total"`) {
		t.Fatalf("show: %d %s", status, resp)
	}

	for _, c := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"POST", "/v1/query", `{"projection":"orders_total","sql":"DELETE FROM totals"}`, 422, "edd_violation"},
		{"POST", "/v1/query", `{"projection":"orders_total","sql":"INSERT INTO totals (stream) VALUES ('x')"}`, 422, "edd_violation"},
		{"POST", "/v1/query", `{"projection":"nope","sql":"SELECT 1"}`, 404, "not_found"},
		{"POST", "/v1/query", `{"projection":"orders_total","sql":"SELECT 1","bogus":1}`, 400, "invalid"},
		{"POST", "/v1/query", `{"projection":"orders_total"`, 400, "invalid"},
		{"POST", "/v1/query", `{"projection":"orders_total","sql":"SELECT 1","args":[{}]}`, 400, "invalid"},
		{"POST", "/v1/query", `{"projection":"orders_total","sql":"SELECT 1; SELECT 2"}`, 400, "invalid"},
		{"POST", "/v1/query", `{"projection":"orders_total","sql":"SELECT 1","min_seq":1000000,"timeout_ms":10}`, 503, "unavailable"},
		{"GET", "/v1/projections/nope", "", 404, "not_found"},
		{"POST", "/v1/projections/nope/rebuild", "", 404, "not_found"},
		{"POST", "/v1/projections/nope/retry", "", 404, "not_found"},
		{"POST", "/v1/projections/orders_total/skip", `{"seq":1}`, 409, "conflict"},
		{"POST", "/v1/projections/orders_total/skip", `{}`, 400, "invalid"},
		{"POST", "/v1/projections/orders_total/retry", "", 200, ""},
	} {
		var rd *strings.Reader
		if c.body != "" {
			rd = strings.NewReader(c.body)
		}
		var status int
		var resp string
		if rd != nil {
			status, resp, _ = s.do(t, c.method, c.path, rd, nil)
		} else {
			status, resp, _ = s.do(t, c.method, c.path, nil, nil)
		}
		if status != c.status || (c.code != "" && !strings.Contains(resp, `"code":"`+c.code+`"`)) {
			t.Errorf("%s %s %s: %d %s; want %d %s", c.method, c.path, c.body, status, resp, c.status, c.code)
		}
	}

	// Without the token: 401, like every /v1 route.
	status, _, _ = s.do(t, "GET", "/v1/projections", nil, map[string]string{"Authorization": ""})
	if status != http.StatusUnauthorized {
		t.Errorf("no token: %d; want 401", status)
	}

	// Rebuild: 202, then the projection catches up again with the same rows.
	status, resp, _ = s.do(t, "POST", "/v1/projections/orders_total/rebuild", nil, nil)
	if status != http.StatusAccepted || !strings.Contains(resp, `"status":"rebuilding"`) {
		t.Fatalf("rebuild: %d %s", status, resp)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, resp, _ = s.do(t, "GET", "/v1/projections/orders_total", nil, nil)
		var st projections.Status
		if status != http.StatusOK || json.Unmarshal([]byte(resp), &st) != nil {
			t.Fatalf("status: %d %s", status, resp)
		}
		if st.State == projections.StateRunning && st.Rebuild == nil && st.Seq >= res.LastSeq {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rebuild did not finish within 20s: %s", resp)
		}
		time.Sleep(20 * time.Millisecond)
	}
	status, resp, _ = s.do(t, "POST", "/v1/query", strings.NewReader(`{"projection":"orders_total","sql":"SELECT sum(n) AS total FROM totals"}`), nil)
	if status != http.StatusOK || !strings.Contains(resp, `"rows":[[3]]`) {
		t.Fatalf("query after rebuild: %d %s", status, resp)
	}
}

func TestProjectionsCLI(t *testing.T) {
	s := startServer(t, t.TempDir())
	d := []string{"--data", s.dir}
	s.appendJSON(t, `{"events":[{"stream":"orders.1","type":"orders.created","data":{}}]}`)
	res := s.appendJSON(t, `{"events":[{"stream":"orders.1","type":"orders.created","data":{}},{"stream":"orders.22","type":"orders.created","data":{}}]}`)

	out, _, err := fazt(t, nil, "", append([]string{"query", "--projection", "orders_total", "SELECT stream, n FROM totals ORDER BY stream", "--min-seq", jsonUint(res.LastSeq)}, d...)...)
	want := "stream     n\norders.1   2\norders.22  1\n(2 rows, as of seq " + jsonUint(res.LastSeq) + ")\n"
	if err != nil || out != want {
		t.Fatalf("query: %v\n%q\nwant\n%q", err, out, want)
	}
	out, _, err = fazt(t, nil, "", append([]string{"query", "--projection", "orders_total", "SELECT n FROM totals WHERE stream = ?", "--arg", "orders.22", "--max-rows", "1"}, d...)...)
	if err != nil || !strings.HasSuffix(out, "(1 row, as of seq "+jsonUint(res.LastSeq)+")\n") {
		t.Fatalf("query with --arg: %v %q", err, out)
	}
	out, _, err = fazt(t, nil, "", append([]string{"query", "--projection", "orders_total", "SELECT stream FROM totals", "--max-rows", "1"}, d...)...)
	if err != nil || !strings.HasSuffix(out, "(truncated)\n") {
		t.Fatalf("truncated query: %v %q", err, out)
	}
	out, _, err = fazt(t, nil, "", append([]string{"query", "--projection", "orders_total", "SELECT count(*) AS c FROM totals", "--json"}, d...)...)
	if err != nil || !strings.Contains(out, `"rows":[[2]]`) {
		t.Fatalf("query --json: %v %q", err, out)
	}
	_, _, err = fazt(t, nil, "", append([]string{"query", "--projection", "orders_total", "DELETE FROM totals"}, d...)...)
	if err == nil || !strings.Contains(err.Error(), "edd_violation") {
		t.Fatalf("write query: %v; want an edd_violation", err)
	}

	out, _, err = fazt(t, nil, "", append([]string{"projections", "status"}, d...)...)
	if err != nil || !regexp.MustCompile(`(?m)^orders_total\s+v1\s+running\s+seq `+jsonUint(res.LastSeq)+`\s+lag 0$`).MatchString(out) {
		t.Fatalf("status: %v %q", err, out)
	}
	out, _, err = fazt(t, nil, "", append([]string{"projections", "status", "orders_total", "--json"}, d...)...)
	if err != nil || !strings.Contains(out, `"state":"running"`) {
		t.Fatalf("status --json: %v %q", err, out)
	}
	_, _, err = fazt(t, nil, "", append([]string{"projections", "status", "nope"}, d...)...)
	if err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Fatalf("status of an unknown projection: %v", err)
	}
	out, _, err = fazt(t, nil, "", append([]string{"projections", "rebuild", "orders_total"}, d...)...)
	if err != nil || !strings.HasPrefix(out, "rebuilding orders_total") {
		t.Fatalf("rebuild: %v %q", err, out)
	}
	out, _, err = fazt(t, nil, "", append([]string{"projections", "retry", "orders_total"}, d...)...)
	if err != nil || out != "resumed orders_total\n" {
		t.Fatalf("retry: %v %q", err, out)
	}
	_, _, err = fazt(t, nil, "", append([]string{"projections", "skip", "orders_total", "--seq", "1"}, d...)...)
	if err == nil || !strings.Contains(err.Error(), "conflict") {
		t.Fatalf("skip when not halted: %v; want a conflict", err)
	}
	waitFor(t, "the rebuild to finish", func() bool {
		out, _, err := fazt(t, nil, "", append([]string{"projections", "status", "orders_total"}, d...)...)
		return err == nil && strings.Contains(out, " running ") && !strings.Contains(out, "rebuild")
	})
}

func jsonUint(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestProjectionsBuildAsOf(t *testing.T) {
	s := startServer(t, t.TempDir())
	d := []string{"--data", s.dir}
	var seqs []uint64
	for _, stream := range []string{"orders.1", "orders.2", "orders.1"} {
		res := s.appendJSON(t, `{"events":[{"stream":"`+stream+`","type":"orders.created","data":{}}]}`)
		seqs = append(seqs, res.LastSeq)
	}
	builds := filepath.Join(s.dir, kernel.BuildsDir)
	// totals reads the built file the way a user would, with SQLite.
	totals := func(path string) string {
		t.Helper()
		db := sqlitedb.New(path)
		if err := db.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var got []string
		rows, err := db.Query(context.Background(), `SELECT stream, n FROM totals ORDER BY stream`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var stream string
			var n int
			if err := rows.Scan(&stream, &n); err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%s=%d", stream, n))
		}
		return strings.Join(got, ",")
	}

	file := filepath.Join(builds, "two.db")
	stdout, _, err := fazt(t, nil, "", append([]string{"projections", "build", "orders_total", "--as-of", jsonUint(seqs[1]), "--out", "two.db"}, d...)...)
	if err != nil || !strings.HasPrefix(stdout, "built orders_total as of seq "+jsonUint(seqs[1])+" into "+file) {
		t.Fatalf("build --as-of seq: %v %q", err, stdout)
	}
	if got := totals(file); got != "orders.1=1,orders.2=1" {
		t.Fatalf("as of seq %d: %s", seqs[1], got)
	}
	// A date before the log began: empty tables. A time after it: everything.
	file = filepath.Join(builds, "before.db")
	if _, _, err := fazt(t, nil, "", append([]string{"projections", "build", "orders_total", "--as-of", "2000-01-01", "--out", "before.db"}, d...)...); err != nil {
		t.Fatal(err)
	}
	if got := totals(file); got != "" {
		t.Fatalf("as of 2000-01-01: %q; want no rows", got)
	}
	file = filepath.Join(builds, "now.db")
	if _, _, err := fazt(t, nil, "", append([]string{"projections", "build", "orders_total", "--as-of", time.Now().Add(time.Minute).UTC().Format(time.RFC3339), "--out", "now.db"}, d...)...); err != nil {
		t.Fatal(err)
	}
	if got := totals(file); got != "orders.1=2,orders.2=1" {
		t.Fatalf("as of now: %s", got)
	}

	// Mistakes.
	if _, _, err := fazt(t, nil, "", append([]string{"projections", "build", "orders_total", "--as-of", "1", "--out", "now.db"}, d...)...); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("build over an existing file: %v", err)
	}
	var u *usageError
	if _, _, err := fazt(t, nil, "", append([]string{"projections", "build", "orders_total", "--as-of", "yesterday", "--out", "x.db"}, d...)...); !errors.As(err, &u) {
		t.Fatalf("bad --as-of: %v; want a usage error", err)
	}
	if _, _, err := fazt(t, nil, "", append([]string{"projections", "build", "nope", "--as-of", "1", "--out", "y.db"}, d...)...); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Fatalf("build of an unknown projection: %v", err)
	}
	if _, _, err := fazt(t, nil, "", append([]string{"projections", "build", "orders_total", "--as-of", "99", "--out", "z.db"}, d...)...); err == nil || !strings.Contains(err.Error(), "past the end") {
		t.Fatalf("build past the log's end: %v", err)
	}
	if _, err := os.Stat(filepath.Join(builds, "z.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed build left its file: %v", err)
	}
	// --out is a name in the server's builds folder, never a path.
	elsewhere := t.TempDir()
	for _, out := range []string{filepath.Join(elsewhere, "abs.db"), "../up.db", "sub/dir.db"} {
		if _, _, err := fazt(t, nil, "", append([]string{"projections", "build", "orders_total", "--as-of", "1", "--out", out}, d...)...); !errors.As(err, &u) || !strings.Contains(err.Error(), "not a path") {
			t.Errorf("build --out %s: %v; want a usage error", out, err)
		}
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) > 0 {
		t.Errorf("build wrote outside the builds folder: %v", entries)
	}
}
