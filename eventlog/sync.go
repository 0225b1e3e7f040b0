package eventlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// blockSyncer makes a group of appends durable with one fsync.
//
// The embedded server runs without per-message fsync; it writes every
// acknowledged message to its block file straight away, so after a group
// is acknowledged one fsync of the newest block file (and of the folder
// when a new block appeared) makes the whole group durable. JetStream's own
// fsync per message would cost one disk flush per event; its atomic batch
// (one flush per batch) stages every batch in a new store, which costs
// many flushes per batch.
type blockSyncer struct {
	dir string // the stream's msgs folder
	idx int    // index of the open block
	f   *os.File
}

func newBlockSyncer(dir string) (*blockSyncer, error) {
	st, err := os.Stat(dir)
	if err == nil && !st.IsDir() {
		err = errors.New("not a directory")
	}
	if err != nil {
		return nil, fmt.Errorf("strict durability needs the stream's message folder %s, which is missing (was the NATS server layout changed?): %w", dir, err)
	}
	return &blockSyncer{dir: dir}, nil
}

// sync flushes every block written since the last call.
func (s *blockSyncer) sync() error {
	if s.f == nil {
		// Find the newest block; the stream has few (8 MiB each).
		entries, err := os.ReadDir(s.dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			var i int
			if _, err := fmt.Sscanf(e.Name(), "%d.blk", &i); err == nil && i > s.idx {
				s.idx = i
			}
		}
		if s.idx == 0 {
			return fmt.Errorf("no message block in %s", s.dir)
		}
		if s.f, err = os.Open(s.blockPath(s.idx)); err != nil {
			return err
		}
		if err := syncDir(s.dir); err != nil {
			return err
		}
	}
	for {
		if _, err := os.Stat(s.blockPath(s.idx + 1)); err != nil {
			break
		}
		// The block rolled over: finish the old one, move to the new one.
		if err := s.f.Sync(); err != nil {
			return err
		}
		s.f.Close()
		s.idx++
		f, err := os.Open(s.blockPath(s.idx))
		if err != nil {
			return err
		}
		s.f = f
		if err := syncDir(s.dir); err != nil {
			return err
		}
	}
	return s.f.Sync()
}

func (s *blockSyncer) blockPath(i int) string {
	return filepath.Join(s.dir, strconv.Itoa(i)+".blk")
}

func (s *blockSyncer) close() {
	if s.f != nil {
		s.f.Close()
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
