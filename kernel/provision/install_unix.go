//go:build unix

package provision

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// matchOwner gives paths the owner of dir. systemd hands the state
// directory to the service's dynamic user at the first start; files
// install adds later must belong to it too, or an upgrade cannot
// replace the binary.
func matchOwner(dir string, paths ...string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return nil // not created yet: systemd chowns it at the first start
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || sys.Uid == 0 {
		return nil
	}
	for _, p := range paths {
		if err := os.Lchown(p, int(sys.Uid), int(sys.Gid)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("give %s to the service's user: %w", p, err)
		}
	}
	return nil
}
