package main

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/kernel"
)

// anyObject accepts any event data that is an object.
const anyObject = `{"type":"object"}`

// testTypes are the event types the tests append, declared the way a
// vertical compiled into the binary declares its own.
var testTypes = []string{"orders.created", "orders.paid", "orders.shipped", "orders.closed", "stock.reserved", "stock.released", "seat.booked", "t", "x"}

// testVerticals are what the tests run fazt with: the binary's own
// verticals, testTypes, and what the test files add in their init (a
// projection, a reactor).
var testVerticals = append(compiledIn(), registerTestTypes)

func registerTestTypes(k *kernel.Kernel) error {
	for _, t := range testTypes {
		if err := k.RegisterEvent(t, 1, []byte(anyObject)); err != nil {
			return err
		}
	}
	// A second version, for the tests that send "schema": 2.
	return k.RegisterEvent("orders.created", 2, []byte(`{"type":"object","properties":{"note":{"type":"string"}}}`))
}

// main prints an error once and exits 2 for a usage error, 1 for any
// other (the exit statuses the package doc promises).
func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		status int
		stderr string
	}{
		{[]string{"version"}, 0, ""},
		{[]string{"version", "--no-such-flag"}, 2, "error: unknown flag: --no-such-flag\nRun 'fazt version --help' for usage.\n"},
		{[]string{"events", "read", "orders.1", "--addr", "http://127.0.0.1:1", "--token", "x"}, 1, "error: cannot reach the fazt server at http://127.0.0.1:1"},
	} {
		var stderr strings.Builder
		err := run(context.Background(), testVerticals, tc.args, noEnv, strings.NewReader(""), io.Discard, io.Discard)
		if got := exitStatus(err, &stderr); got != tc.status || !strings.HasPrefix(stderr.String(), tc.stderr) {
			t.Errorf("%v: exit status %d, stderr %q; want %d, %q", tc.args, got, stderr.String(), tc.status, tc.stderr)
		}
	}
}
