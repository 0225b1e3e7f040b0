package main

import (
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/backup"
	"github.com/fazt-sh/fazt/kernel/provision"
	"github.com/fazt-sh/fazt/kernel/vfs"
	"github.com/fazt-sh/fazt/verticals/analytics"
	"github.com/fazt-sh/fazt/verticals/apps"
)

// vertical is a business module: it registers its event types,
// projections, reactors and routes with a kernel before the kernel opens.
type vertical func(*kernel.Kernel) error

// compiledIn returns the verticals compiled into this binary. main hands
// them to run; tests hand run their own list.
func compiledIn() []vertical {
	return append([]vertical{
		func(k *kernel.Kernel) error { return analytics.Register(k, analytics.Config{}) },
		// The vfs service (blobs, deploys, the vfs read model), and the
		// hosting vertical on the *vfs.Service it returns.
		func(k *kernel.Kernel) error {
			files, err := vfs.Register(k, vfs.Config{})
			if err != nil {
				return err
			}
			if err := apps.Register(k, files, apps.Config{}); err != nil {
				return err
			}
			siteRoutes.Store(k, apps.NewRoutes(k, files)) // for the edge (serve --domain)
			return nil
		},
		// The backup service; fazt serve gives it the --backup URLs.
		func(k *kernel.Kernel) error { _, err := backup.Register(k, backup.Config{}); return err },
		// Upgrades and rollbacks: its events, routes and reactor.
		func(k *kernel.Kernel) error {
			_, err := provision.Register(k, provision.Config{Version: buildVersion().Version})
			return err
		},
	}, tagged...)
}
