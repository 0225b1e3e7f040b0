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

// ProjectionsDir is the folder, under a replica URL, of the projection
// files' replicas: <URL>/projections/<name>/<gen>.
const ProjectionsDir = "projections"

// projStager replicates one projection generation file.
type projStager struct {
	key       string // <name>/<gen>
	name, gen string // gen: the file's name without ".db" ("000002")
	st        *stager
	// retired: the generation no longer serves; its Litestream has made
	// a last sync into the staging folder, which stays until every
	// replica has copied it.
	retired bool
}

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

// projectionStagers are the projection generations to mirror now.
func (s *Service) projectionStagers() []projStager {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]projStager, 0, len(s.projs))
	for _, ps := range s.projs {
		out = append(out, *ps)
	}
	return out
}

// stageProjections follows each projection's serving generation: a new
// one (first seen, or after a rebuild switched to it) is recorded in the
// archive's projection_files and gets a Litestream of its own; one no
// longer serving has a last sync and is retired (its replicas stay where
// they are; its staging folder goes once every replica has copied it).
// Then each serving one is synced into its staging folder.
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
		key := p.Name + "/" + gen
		cur[key] = projStager{key: key, name: p.Name, gen: gen}
	}
	var errs []error
	s.mu.Lock()
	var retire, drop []*projStager
	for key, ps := range s.projs {
		if _, ok := cur[key]; ok {
			continue
		}
		if !ps.retired {
			retire = append(retire, ps)
		} else if s.copiedByAll(key) {
			delete(s.projs, key)
			drop = append(drop, ps)
		}
	}
	s.mu.Unlock()
	for _, ps := range retire {
		if err := ps.st.close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("projection %s generation %s: %w", ps.name, ps.gen, err))
		}
		// Retired once its last sync is in the staging folder: a replica
		// that copies the folder from now on has all of it.
		ps.st.ver.Add(1)
		s.mu.Lock()
		ps.retired = true
		s.mu.Unlock()
		s.logger().Info("backup: projection generation replaced, its replication stops", "projection", ps.name, "generation", ps.gen)
	}
	for _, ps := range drop {
		s.forgetProjection(ps.key)
		_ = os.RemoveAll(ps.st.dir)
		_ = os.RemoveAll(ps.st.meta)
	}
	for key, ps := range cur {
		s.mu.Lock()
		have := s.projs[key]
		s.mu.Unlock()
		if have == nil || have.retired {
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
			s.forgetProjection(key)
			have = &projStager{key: key, name: ps.name, gen: ps.gen, st: st}
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

// copiedByAll reports whether every replica has copied a retired
// generation's staging folder since it was retired. s.mu is held.
func (s *Service) copiedByAll(key string) bool {
	for _, r := range s.replicas {
		r.mu.Lock()
		done := r.retiredDone[key]
		r.mu.Unlock()
		if !done {
			return false
		}
	}
	return true
}

// forgetProjection drops the replicas' state about a generation.
func (s *Service) forgetProjection(key string) {
	s.mu.Lock()
	reps := s.replicas
	s.mu.Unlock()
	for _, r := range reps {
		r.mu.Lock()
		delete(r.retiredDone, key)
		r.mu.Unlock()
	}
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
		if !ps.retired {
			errs = append(errs, ps.st.close(ctx))
		}
	}
	if stg != nil {
		errs = append(errs, stg.close(ctx))
	}
	return errors.Join(errs...)
}
