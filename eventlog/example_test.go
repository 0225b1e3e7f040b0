package eventlog_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/fazt-sh/fazt/eventlog"
)

func Example() {
	dir, _ := os.MkdirTemp("", "fazt-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	l := eventlog.New(dir)
	if err := l.Open(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close(ctx)

	// An order and its stock reservation land together or not at all.
	res, err := l.Append(ctx, []eventlog.Event{
		{Stream: "orders.42", Type: "orders.placed", Data: json.RawMessage(`{"total":12}`)},
		{Stream: "stock.apples", Type: "stock.reserved", Data: json.RawMessage(`{"n":3}`)},
	}, eventlog.ExpectNew("orders.42"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("appended up to seq", res.LastSeq)

	// The same expectation again conflicts: orders.42 exists now.
	_, err = l.Append(ctx, []eventlog.Event{{Stream: "orders.42", Type: "orders.placed"}}, eventlog.ExpectNew("orders.42"))
	fmt.Println(errors.Is(err, eventlog.ErrConflict), err)

	evs, _ := l.ReadStream(ctx, "orders.42", 1, 10)
	for _, e := range evs {
		fmt.Println(e.Seq, e.Version, e.Type, string(e.Data))
	}
	// Output:
	// appended up to seq 2
	// true conflict on stream "orders.42": expected no stream, stream is at version 1
	// 1 1 orders.placed {"total":12}
}

// The subjects of the wire form, for code that filters or publishes on
// them.
func ExampleSubjectOf() {
	fmt.Println(eventlog.SubjectOf("orders.42"))
	fmt.Println(eventlog.StreamOf("fazt.ev.orders.42"))
	fmt.Println(eventlog.StreamOf("elsewhere.1"))
	fmt.Println(eventlog.CategorySubject("orders"), eventlog.AllSubjects)
	// Output:
	// fazt.ev.orders.42
	// orders.42 true
	// elsewhere.1 false
	// fazt.ev.orders.> fazt.ev.>
}
