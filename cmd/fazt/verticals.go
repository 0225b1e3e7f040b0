package main

import (
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/verticals/analytics"
)

// The verticals compiled into the binary.
func init() {
	verticals = append(verticals, func(k *kernel.Kernel) error { return analytics.Register(k, analytics.Config{}) })
}
