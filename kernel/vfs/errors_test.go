package vfs

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// The service's errors map to the kernel's HTTP answers: a missing blob
// or a bad manifest is 400, an oversized blob 413, an unknown deploy
// 404.
func TestErrorsMapToHTTP(t *testing.T) {
	e := start(t, t.TempDir(), Config{MaxBlobBytes: 10})
	ctx := context.Background()
	_, missing := e.s.RecordDeploy(ctx, "blog", Manifest{Files: map[string]File{"a": {SHA256: Hash([]byte("nope")), Size: 4}}})
	_, badPath := e.s.RecordDeploy(ctx, "blog", Manifest{Files: map[string]File{"../a": {SHA256: Hash([]byte("nope")), Size: 4}}})
	big := bytes.Repeat([]byte("x"), 11)
	tooBig := e.s.PutBlob(ctx, Hash(big), bytes.NewReader(big))
	unknown := e.s.Activate(ctx, "blog", "01HZZZZZZZZZZZZZZZZZZZZZZZ")
	for _, c := range []struct {
		err    error
		status int
		code   string
	}{{missing, 400, "invalid"}, {badPath, 400, "invalid"}, {tooBig, 413, "too_large"}, {unknown, 404, "not_found"}} {
		if c.err == nil {
			t.Fatalf("want an error answered %d", c.status)
		}
		rec := httptest.NewRecorder()
		e.k.WriteError(rec, httptest.NewRequest("GET", "/", nil), c.err)
		body, _ := io.ReadAll(rec.Result().Body)
		if rec.Code != c.status || !strings.Contains(string(body), `"code":"`+c.code+`"`) {
			t.Errorf("%v: %d %s, want %d %s", c.err, rec.Code, body, c.status, c.code)
		}
	}
}
