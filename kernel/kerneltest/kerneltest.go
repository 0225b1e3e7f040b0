// Package kerneltest calls a kernel's HTTP API from tests: the kernel's
// own, those of the binary, and those of verticals and services built on
// it. It speaks plain HTTP to a real server (a kernel listening on a
// loopback port, or an httptest.Server around its Handler); it fakes
// nothing.
//
//	c := kerneltest.Client{Base: "http://" + k.ListenAddr(), Token: k.Token}
//	res := c.Append(t, `{"events":[{"stream":"orders.1","type":"orders.placed","data":{}}]}`)
//	status, body, _ := c.Do(t, "GET", "/v1/streams/orders.1", nil, nil)
//	status, _, h := c.Do(t, "GET", "/v1/events", nil, map[string]string{"Authorization": ""}) // no token: 401
//
// Only tests import this package (it imports testing).
package kerneltest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/fazt-sh/fazt/eventlog"
)

// Client sends requests to the API at Base ("http://127.0.0.1:PORT"),
// with Token as the bearer token (none when empty).
type Client struct {
	Base  string
	Token string
}

// Do sends a request and returns the answer's status, body and headers;
// it fails tb when there is no answer. headers are set on the request,
// over the token's Authorization; a header given as "" is not sent.
// "Host" sets the request's Host (which net/http takes from req.Host,
// not from its headers).
func (c Client) Do(tb testing.TB, method, path string, body io.Reader, headers map[string]string) (int, string, http.Header) {
	tb.Helper()
	req, err := http.NewRequest(method, c.Base+path, body)
	if err != nil {
		tb.Fatal(err)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	for name, v := range headers {
		if http.CanonicalHeaderKey(name) == "Host" {
			req.Host = v
			continue
		}
		req.Header.Del(name)
		if v != "" {
			req.Header.Set(name, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read the answer: %v", method, path, err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// Append posts body to POST /v1/events, requires 200 and returns the
// positions the log gave.
func (c Client) Append(tb testing.TB, body string) eventlog.Result {
	tb.Helper()
	status, resp, _ := c.Do(tb, "POST", "/v1/events", strings.NewReader(body), nil)
	if status != http.StatusOK {
		tb.Fatalf("append %.200s: %d %s", body, status, resp)
	}
	var res eventlog.Result
	if err := json.Unmarshal([]byte(resp), &res); err != nil {
		tb.Fatalf("append answer %s: %v", resp, err)
	}
	return res
}

// Buffer is a bytes.Buffer that a running kernel (its logger, a
// command's output) and the test can use at the same time.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
