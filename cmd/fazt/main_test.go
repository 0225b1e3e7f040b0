package main

import (
	"os"
	"testing"

	"github.com/fazt-sh/fazt/kernel"
)

// anyObject accepts any event data that is an object.
const anyObject = `{"type":"object"}`

// testTypes are the event types the tests append, declared the way a
// vertical compiled into the binary declares its own.
var testTypes = []string{"orders.created", "orders.paid", "orders.shipped", "orders.closed", "stock.reserved", "stock.released", "seat.booked", "t", "x"}

func TestMain(m *testing.M) {
	verticals = append(verticals, func(k *kernel.Kernel) error {
		for _, t := range testTypes {
			if err := k.RegisterEvent(t, 1, []byte(anyObject)); err != nil {
				return err
			}
		}
		// A second version, for the tests that send "schema": 2.
		return k.RegisterEvent("orders.created", 2, []byte(`{"type":"object","properties":{"note":{"type":"string"}}}`))
	})
	os.Exit(m.Run())
}
