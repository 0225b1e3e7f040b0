package kernel_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/kernel"
)

// queryKernel is an open kernel with the counts projection, for
// POST /v1/query.
func queryKernel(t *testing.T) *kernel.Kernel {
	t.Helper()
	k := newKernel(t, t.TempDir(), nil)
	if err := k.RegisterEvent("t.hit", 1, []byte(`{"type":"object"}`)); err != nil {
		t.Fatal(err)
	}
	if err := k.RegisterProjection(counter("t.hit", "")); err != nil {
		t.Fatal(err)
	}
	open(t, k)
	return k
}

func queryBody(t *testing.T, sql string, extra map[string]any) string {
	t.Helper()
	req := map[string]any{"projection": "counts", "sql": sql}
	for k, v := range extra {
		req[k] = v
	}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestQueryAnswerBoundedInBytes: an answer larger than max_bytes (16 MiB
// by default) is refused with 413 too_large, whether one huge value or
// many rows; SQLite refuses to make a value past the bound at all.
func TestQueryAnswerBoundedInBytes(t *testing.T) {
	k := queryKernel(t)
	many := `WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 9000) SELECT x, hex(zeroblob(1000)) AS filler FROM n`
	for _, c := range []struct {
		name, sql string
		extra     map[string]any
		want      string
	}{
		// 20 MB of zeros: past the length limit SQLite enforces.
		{"one huge value", "SELECT zeroblob(20000000)", nil, "larger than 16777216 bytes"},
		{"one huge string", "SELECT printf('%.*c', 20000000, 'x')", nil, "larger than 16777216 bytes"},
		// 4 MB of zeros is 24 MB as JSON (\u0000 each).
		{"a value whose JSON is too large", "SELECT zeroblob(4000000)", nil, "max_bytes=16777216"},
		// 9000 rows of 2 KB: 18 MB.
		{"many rows", many, map[string]any{"max_rows": 10000}, "max_bytes=16777216"},
		{"max_bytes", "SELECT hex(zeroblob(100)) FROM counts UNION ALL SELECT hex(zeroblob(1000))", map[string]any{"max_bytes": 1000}, "max_bytes=1000"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body, _ := call(t, k, "POST", "/v1/query", k.Token, queryBody(t, c.sql, c.extra))
			if status != http.StatusRequestEntityTooLarge || !strings.Contains(body, `"code":"too_large"`) || !strings.Contains(body, c.want) {
				t.Fatalf("%d %.300s; want 413 too_large saying %q", status, body, c.want)
			}
		})
	}

	// Under the bound: answered in full.
	status, body, _ := call(t, k, "POST", "/v1/query", k.Token, queryBody(t, "SELECT length(hex(zeroblob(1000000))) AS n, hex(zeroblob(100000)) AS h", nil))
	if status != http.StatusOK || !strings.Contains(body, `"rows":[[2000000,"`) || len(body) < 200000 {
		t.Fatalf("query under the bound: %d %.200s", status, body)
	}
	status, body, _ = call(t, k, "POST", "/v1/query", k.Token, queryBody(t, many, map[string]any{"max_rows": 10000, "max_bytes": 0}))
	if status != http.StatusRequestEntityTooLarge {
		t.Fatalf("max_bytes 0 is the default: %d %.200s", status, body)
	}
	status, body, _ = call(t, k, "POST", "/v1/query", k.Token, queryBody(t, "SELECT 1", map[string]any{"max_bytes": 16<<20 + 1}))
	if status != http.StatusBadRequest || !strings.Contains(body, "max_bytes=16777217 is out of range") {
		t.Fatalf("max_bytes past the bound: %d %s", status, body)
	}
	// The connection's limit is restored for what shares the pool.
	for range 8 {
		status, body, _ = call(t, k, "POST", "/v1/query", k.Token, queryBody(t, "SELECT count(*) FROM counts", nil))
		if status != http.StatusOK {
			t.Fatalf("query after refusals: %d %s", status, body)
		}
	}
}

// TestQueryRefusesWritesAndEscapes: statements that write, attach, or
// reach outside the projection's file are refused with a 4xx naming
// them, and leave no file behind.
func TestQueryRefusesWritesAndEscapes(t *testing.T) {
	k := queryKernel(t)
	dir := t.TempDir()
	copyFile, other, written := filepath.Join(dir, "copy.db"), filepath.Join(dir, "other.db"), filepath.Join(dir, "written")
	for _, c := range []struct {
		sql    string
		status int
		code   string
		want   string
	}{
		{"VACUUM", 422, "edd_violation", "VACUUM is not allowed"},
		{"VACUUM INTO '" + copyFile + "'", 422, "edd_violation", "VACUUM INTO is not allowed: a read model is one database file"},
		{"ATTACH DATABASE '" + other + "' AS other", 422, "edd_violation", "ATTACH is not allowed"},
		{"DETACH main", 422, "edd_violation", "DETACH is not allowed"},
		{"PRAGMA user_version = 3", 422, "edd_violation", "PRAGMA user_version with an argument is not allowed"},
		{"PRAGMA journal_mode = DELETE", 422, "edd_violation", "PRAGMA journal_mode with an argument is not allowed"},
		{"PRAGMA query_only = 0", 422, "edd_violation", "PRAGMA query_only with an argument is not allowed"},
		{"SELECT load_extension('" + filepath.Join(dir, "x.so") + "')", 422, "edd_violation", "function load_extension is not allowed"},
		{"SELECT writefile('" + written + "', 'x')", 400, "invalid", "no such function: writefile"},
		{"SELECT readfile('/etc/passwd')", 400, "invalid", "no such function: readfile"},
		{"SELEC 1", 400, "invalid", "syntax error"},
		{"SELECT * FROM nope", 400, "invalid", "no such table: nope"},
		{"SELECT ?", 400, "invalid", "argument"},
	} {
		status, body, _ := call(t, k, "POST", "/v1/query", k.Token, queryBody(t, c.sql, nil))
		if status != c.status || !strings.Contains(body, `"code":"`+c.code+`"`) || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s; want %d %s saying %q", c.sql, status, body, c.status, c.code, c.want)
		}
	}
	for _, f := range []string{copyFile, other, written} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("a refused query created %s", f)
		}
	}
}
