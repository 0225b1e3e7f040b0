package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal starts a graceful shutdown, a second one
	// kills the process as usual.
	context.AfterFunc(ctx, stop)
	err := run(ctx, compiledIn(), os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitStatus(err, os.Stderr))
}

// exitStatus prints err, if any, to stderr and returns the process's
// exit status: 0 on success, 2 for a usage error, 1 for any other error.
func exitStatus(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "error:", err)
	var u *usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}
