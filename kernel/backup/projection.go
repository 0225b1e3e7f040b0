package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/benbjohnson/litestream"

	"github.com/fazt-sh/fazt/eventlog"
)

// projStager replicates one projection generation file.
type projStager struct {
	name, gen string // gen: the file's name without ".db" ("000002")
	st        *stager
}

// ProjectionsDir is the folder, under a replica URL, of the projection
// files' replicas: <URL>/projections/<name>/<gen>.
const ProjectionsDir = "projections"

// UseProjections turns on the replication of the projection files
// (Config.Projections), before Start (the --backup-projections flag).
func (s *Service) UseProjections() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return fmt.Errorf("%w: --backup-projections is given before Start", eventlog.ErrInvalid)
	}
	s.cfg.Projections = true
	return nil
}

// projectionStagers are the projection generations replicated now, by
// staging folder.
func (s *Service) projectionStagers() map[string]projStager {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]projStager, len(s.projs))
	for dir, ps := range s.projs {
		if ps.st.client != nil {
			out[dir] = *ps
		}
	}
	return out
}

// stageProjections follows each projection's serving generation: a new
// one (first seen, or after a rebuild switched to it) is recorded in the
// archive's projection_files and gets a Litestream of its own; one no
// longer serving stops (its replicas stay where they are). Then each is
// synced into its staging folder.
func (s *Service) stageProjections(ctx context.Context) error {
	if !s.cfg.Projections {
		return nil
	}
	cur := map[string]projStager{}
	for _, p := range s.k.Projections().Statuses() {
		file := filepath.Base(p.File)
		if !strings.HasSuffix(file, ".db") {
			continue // not open (yet)
		}
		gen := strings.TrimSuffix(file, ".db")
		cur[filepath.Join(p.Name, gen)] = projStager{name: p.Name, gen: gen}
	}
	var errs []error
	s.mu.Lock()
	for key, ps := range s.projs {
		if _, ok := cur[key]; !ok {
			delete(s.projs, key)
			s.mu.Unlock()
			if err := ps.st.close(ctx); err != nil {
				errs = append(errs, fmt.Errorf("projection %s generation %s: %w", ps.name, ps.gen, err))
			}
			// Its replicas keep the generation; the local copy goes.
			_ = os.RemoveAll(ps.st.dir)
			_ = os.RemoveAll(ps.st.meta)
			s.logger().Info("backup: projection generation replaced, its replication stops", "projection", ps.name, "generation", ps.gen)
			s.mu.Lock()
		}
	}
	s.mu.Unlock()
	for key, ps := range cur {
		s.mu.Lock()
		have := s.projs[key]
		s.mu.Unlock()
		if have == nil {
			if err := s.arch.addProjectionFile(ctx, ps.name, ps.gen, time.Now()); err != nil {
				errs = append(errs, err)
				continue
			}
			path := filepath.Join(s.k.Dir("projections"), ps.name, ps.gen+".db")
			dir := filepath.Join(filepath.Dir(s.cfg.Path), stagingDir, ProjectionsDir, ps.name, ps.gen)
			st := newStager(path, dir, s.litestreamLogger().With("projection", ps.name))
			// Litestream's local state goes beside the staging folder, not
			// into the projection's folder, which the runner owns.
			st.meta = dir + litestream.MetaDirSuffix
			if err := st.open(ctx); err != nil {
				errs = append(errs, fmt.Errorf("projection %s: %w", ps.name, err))
				continue
			}
			have = &projStager{name: ps.name, gen: ps.gen, st: st}
			s.mu.Lock()
			s.projs[key] = have
			s.mu.Unlock()
			s.logger().Info("backup: replicating a projection generation", "projection", ps.name, "generation", ps.gen)
		}
		if err := have.st.sync(ctx, 0); err != nil {
			errs = append(errs, fmt.Errorf("projection %s generation %s: %w", ps.name, ps.gen, err))
		}
	}
	return errors.Join(errs...)
}

// closeStagers stops the Litestreams of the archive and the projection
// files.
func (s *Service) closeStagers(ctx context.Context) error {
	s.mu.Lock()
	stg, projs := s.stg, s.projs
	s.projs = map[string]*projStager{}
	s.mu.Unlock()
	var errs []error
	for _, ps := range projs {
		errs = append(errs, ps.st.close(ctx))
	}
	if stg != nil {
		errs = append(errs, stg.close(ctx))
	}
	return errors.Join(errs...)
}
