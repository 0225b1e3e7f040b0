package reactor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel/reactor"
)

// A reactor that sends a welcome mail when a user signs up. In a kernel,
// pass the same Reactor to Kernel.RegisterReactor instead of calling
// Start.
func Example() {
	dir, _ := os.MkdirTemp("", "fazt-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	log := eventlog.New(dir)
	if err := log.Open(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer log.Close(ctx)

	sent := make(chan string, 1)
	run, err := reactor.Start(ctx, log, reactor.Reactor{
		Name:   "welcome",
		Filter: eventlog.Filter{Categories: []string{"users"}, Types: []string{"users.signed_up"}},
		Handle: func(ctx context.Context, e eventlog.Event, key string) error {
			var d struct {
				Email string `json:"email"`
			}
			if err := json.Unmarshal(e.Data, &d); err != nil {
				return err // tried again after a backoff, parked after MaxAttempts
			}
			// A real mailer gets key as its idempotency key: the event
			// may be delivered again, the mail must go out once.
			sent <- d.Email
			return nil
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer run.Stop(ctx)

	_, err = log.Append(ctx, []eventlog.Event{
		{Stream: "users.ada", Type: "users.signed_up", Data: json.RawMessage(`{"email":"ada@example.com"}`)},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("welcome mail to", <-sent)
	st, err := run.Status(ctx)
	fmt.Println("parked:", len(st.Parked), err)
	// Output:
	// welcome mail to ada@example.com
	// parked: 0 <nil>
}
