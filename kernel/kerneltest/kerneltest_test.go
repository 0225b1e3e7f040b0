package kerneltest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/kernel/kerneltest"
)

// Do sends the token unless a header replaces or removes it, and the
// body; it returns what the server answered.
func TestDoHeaders(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		w.WriteHeader(http.StatusTeapot)
		json.NewEncoder(w).Encode(map[string]any{"auth": r.Header.Values("Authorization"), "body": string(b)})
	}))
	defer srv.Close()
	c := kerneltest.Client{Base: srv.URL, Token: "tok"}
	for _, tc := range []struct {
		headers map[string]string
		want    string
	}{
		{nil, `{"auth":["Bearer tok"],"body":"hi"}`},
		{map[string]string{"Authorization": "Basic eDp5"}, `{"auth":["Basic eDp5"],"body":"hi"}`},
		{map[string]string{"Authorization": ""}, `{"auth":null,"body":"hi"}`},
	} {
		status, body, h := c.Do(t, "PUT", "/x", strings.NewReader("hi"), tc.headers)
		if status != http.StatusTeapot || strings.TrimSpace(body) != tc.want || h.Get("X-Method") != "PUT" {
			t.Errorf("headers %v: %d %s %v; want 418 %s", tc.headers, status, body, h, tc.want)
		}
	}
	_, body, _ := kerneltest.Client{Base: srv.URL}.Do(t, "GET", "/x", nil, nil)
	if strings.TrimSpace(body) != `{"auth":null,"body":""}` {
		t.Errorf("without a token: %s", body)
	}
}
