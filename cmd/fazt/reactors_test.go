package main

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/reactor"
)

// mailerBroken makes the test binary's reactor fail, to park events.
var mailerBroken atomic.Bool

// The test binary's reactor: it "sends" mail.requested events.
func init() {
	mailerBroken.Store(true)
	testVerticals = append(testVerticals, func(k *kernel.Kernel) error {
		if err := k.RegisterEvent("mail.requested", 1, []byte(anyObject)); err != nil {
			return err
		}
		return k.RegisterReactor(reactor.Reactor{
			Name:   "mailer",
			Filter: eventlog.Filter{Types: []string{"mail.requested"}},
			Handle: func(ctx context.Context, e eventlog.Event, key string) error {
				if mailerBroken.Load() {
					return errors.New("smtp: connection refused")
				}
				return nil
			},
			MaxAttempts: 2,
			Backoff:     []time.Duration{10 * time.Millisecond},
			FetchWait:   100 * time.Millisecond,
		})
	})
}

func TestReactorsCLI(t *testing.T) {
	mailerBroken.Store(true)
	defer mailerBroken.Store(true)
	s := startServer(t, t.TempDir())
	d := []string{"--data", s.dir}
	res := s.appendJSON(t, `{"events":[{"stream":"mail.1","type":"mail.requested","data":{}}]}`)
	seq := jsonUint(res.LastSeq)
	waitFor(t, "the failing event to be parked", func() bool {
		out, _, err := fazt(t, nil, "", append([]string{"reactors", "status"}, d...)...)
		return err == nil && strings.Contains(out, "parked seq "+seq)
	})
	out, _, err := fazt(t, nil, "", append([]string{"reactors", "status"}, d...)...)
	if err != nil || !strings.Contains(out, "mailer") || !strings.Contains(out, "parked 1") || !strings.Contains(out, "after 2 attempts: smtp: connection refused") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if out, _, err := fazt(t, nil, "", append([]string{"reactors", "status", "--json"}, d...)...); err != nil || !strings.Contains(out, `"name":"mailer"`) {
		t.Fatalf("status --json: %v %s", err, out)
	}
	if _, _, err := fazt(t, nil, "", append([]string{"reactors", "retry", "mailer", "--seq", seq}, d...)...); err == nil || !strings.Contains(err.Error(), "still parked") {
		t.Fatalf("retry while the cause remains: %v", err)
	}
	mailerBroken.Store(false)
	out, _, err = fazt(t, nil, "", append([]string{"reactors", "retry", "mailer", "--seq", seq}, d...)...)
	if err != nil || !strings.Contains(out, "no longer parked") {
		t.Fatalf("retry once fixed: %v %q", err, out)
	}
	if out, _, err := fazt(t, nil, "", append([]string{"reactors", "status"}, d...)...); err != nil || !strings.Contains(out, "parked 0") {
		t.Fatalf("status after the retry: %v\n%s", err, out)
	}
	if _, _, err := fazt(t, nil, "", append([]string{"reactors", "retry", "nope", "--seq", seq}, d...)...); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Fatalf("retry on an unknown reactor: %v", err)
	}
	var u *usageError
	if _, _, err := fazt(t, nil, "", append([]string{"reactors", "retry", "mailer"}, d...)...); !errors.As(err, &u) {
		t.Fatalf("retry without --seq: %v; want a usage error", err)
	}
}
