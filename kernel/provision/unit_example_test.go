package provision_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/fazt-sh/fazt/kernel/provision"
)

// The unit's command line is made from the options, validated first.
func ExampleUnit() {
	unit, err := provision.Unit(provision.Options{Domain: "Example.COM", Backup: []string{"s3://bucket/fazt%20site"}})
	if err != nil {
		log.Fatal(err)
	}
	for line := range strings.SplitSeq(string(unit), "\n") {
		if strings.HasPrefix(line, "ExecStart=") || strings.HasPrefix(line, "Capability") {
			fmt.Println(line)
		}
	}
	_, err = provision.Unit(provision.Options{Domain: "example.com\nExecStartPre=/bin/sh"})
	fmt.Println(err)
	// Output:
	// ExecStart=/var/lib/fazt/bin/fazt serve --data /var/lib/fazt/data --domain example.com --backup "s3://bucket/fazt%%20site"
	// CapabilityBoundingSet=CAP_NET_BIND_SERVICE
	// invalid: --domain "example.com\nExecStartPre=/bin/sh" has a line break: give a plain domain such as example.com
}

// A server tells systemd how it is doing for as long as it runs.
func ExampleNotifier_Supervise() {
	n, err := provision.NotifierFromEnv(os.Getenv, os.Getpid())
	if err != nil {
		log.Print(err) // a bad NOTIFY_SOCKET: run without telling systemd
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop() // STOPPING=1
	ready := func() provision.Readiness {
		return provision.Readiness{Ready: true, Status: "ready"} // ask the real server here
	}
	go n.Supervise(ctx, ready, func(msg string, err error) { log.Print(msg, ": ", err) })
}
