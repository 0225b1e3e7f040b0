package vfs

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
)

// tablesV1 are the tables of projection version 1. Shipped declarations
// never change; a later version appends nullable columns and new tables.
func tablesV1() []schemas.Table {
	text := func(name string) schemas.Column { return schemas.Column{Name: name, Type: "TEXT", NotNull: true} }
	integer := func(name string) schemas.Column { return schemas.Column{Name: name, Type: "INTEGER", NotNull: true} }
	key := func(name, typ string) schemas.Column {
		return schemas.Column{Name: name, Type: typ, NotNull: true, PrimaryKey: true}
	}
	return []schemas.Table{
		// Each site, and the deploy serving it (NULL: none).
		{Name: "sites", Columns: []schemas.Column{
			key("site", "TEXT"),
			{Name: "live", Type: "TEXT"},
			{Name: "deleted", Type: "INTEGER", NotNull: true, Default: "0"},
			integer("seq"), // the log position of its last change
		}},
		// Every deploy recorded.
		{Name: "deploys", Columns: []schemas.Column{
			key("id", "TEXT"), text("site"), integer("seq"), text("at"), integer("files"), integer("bytes"),
			{Name: "fallback", Type: "TEXT", NotNull: true, Default: "''"},
			{Name: "not_found", Type: "TEXT", NotNull: true, Default: "''"},
		}, Indexes: []schemas.Index{{Name: "deploys_site", Columns: []string{"site", "seq"}}}},
		// The files of each deploy; gzip and br name variant blobs.
		{Name: "files", Columns: []schemas.Column{
			key("deploy", "TEXT"), key("path", "TEXT"), text("sha"), integer("size"), text("type"),
			{Name: "gzip", Type: "TEXT"}, {Name: "gzip_size", Type: "INTEGER"},
			{Name: "br", Type: "TEXT"}, {Name: "br_size", Type: "INTEGER"},
		}, Indexes: []schemas.Index{{Name: "files_sha", Columns: []string{"sha"}}}},
		// Every activation, for the history of a site.
		{Name: "activations", Columns: []schemas.Column{
			key("seq", "INTEGER"), text("site"), text("deploy"), text("at"),
		}},
		// The blobs named by deploys, each once, and their bytes in
		// chunks of ChunkBytes (the last one shorter).
		{Name: "blobs", Columns: []schemas.Column{key("sha", "TEXT"), integer("size")}},
		{Name: "chunks", Columns: []schemas.Column{
			key("sha", "TEXT"), key("n", "INTEGER"), {Name: "data", Type: "BLOB", NotNull: true},
		}},
	}
}

// projection is the read model "vfs".
func (s *Service) projection() projections.Projection {
	return projections.Projection{
		Name:    projectionName,
		Version: 1,
		Tables:  tablesV1(),
		Filter:  eventlog.Filter{Categories: []string{Category}},
		Apply:   s.apply,
	}
}

func (s *Service) apply(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
	// Before anything commits: the resolutions cached from older
	// snapshots are no longer used (see resolveCache).
	for {
		cur := s.applied.Load()
		if e.Seq <= cur || s.applied.CompareAndSwap(cur, e.Seq) {
			break
		}
	}
	at := e.Time.UTC().Format(time.RFC3339Nano)
	switch e.Type {
	case TypeDeployRecorded:
		var d DeployRecorded
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return fmt.Errorf("decode %s: %w", e.Type, err)
		}
		if d.ManifestBlob != nil {
			m, err := s.loadManifest(ctx, *d.ManifestBlob)
			if err != nil {
				return fmt.Errorf("deploy %s of site %s: %w", d.Deploy, d.Site, err)
			}
			d.Manifest = m
		}
		var bytes int64
		for _, f := range d.Files {
			bytes += f.Size
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO deploys (id, site, seq, at, files, bytes, fallback, not_found) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			d.Deploy, d.Site, e.Seq, at, len(d.Files), bytes, d.Fallback, d.NotFound); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO sites (site, seq) VALUES (?, ?) ON CONFLICT (site) DO NOTHING`, d.Site, e.Seq); err != nil {
			return err
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO files (deploy, path, sha, size, type, gzip, gzip_size, br, br_size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		var blobs []Variant
		for _, p := range sortedPaths(d.Files) {
			f := d.Files[p]
			var gz, gzn, br, brn any
			if f.Gzip != nil {
				gz, gzn = f.Gzip.SHA256, f.Gzip.Size
				blobs = append(blobs, *f.Gzip)
			}
			if f.Br != nil {
				br, brn = f.Br.SHA256, f.Br.Size
				blobs = append(blobs, *f.Br)
			}
			blobs = append(blobs, Variant{SHA256: f.SHA256, Size: f.Size})
			if _, err := ins.ExecContext(ctx, d.Deploy, p, f.SHA256, f.Size, f.Type, gz, gzn, br, brn); err != nil {
				return err
			}
		}
		return s.copyBlobs(ctx, tx, blobs)
	case TypeDeployActivated:
		var a DeployActivated
		if err := json.Unmarshal(e.Data, &a); err != nil {
			return fmt.Errorf("decode %s: %w", e.Type, err)
		}
		var ok bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS(SELECT 1 FROM deploys WHERE id = ? AND site = ?)`, a.Deploy, a.Site).Scan(&ok); err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("site %s has no deploy %s to activate", a.Site, a.Deploy)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE sites SET live = ?, deleted = 0, seq = ? WHERE site = ?`, a.Deploy, e.Seq, a.Site); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO activations (seq, site, deploy, at) VALUES (?, ?, ?, ?)`, e.Seq, a.Site, a.Deploy, at)
		return err
	case TypeSiteDeleted:
		var d SiteDeleted
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return fmt.Errorf("decode %s: %w", e.Type, err)
		}
		_, err := tx.ExecContext(ctx, `UPDATE sites SET live = NULL, deleted = 1, seq = ? WHERE site = ?`, e.Seq, d.Site)
		return err
	}
	return nil
}

func sortedPaths(files map[string]File) []string {
	ps := make([]string, 0, len(files))
	for p := range files {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// copyBlobs copies the blobs the projection lacks from the object store
// into chunk rows, checking each against its hash.
func (s *Service) copyBlobs(ctx context.Context, tx *sql.Tx, blobs []Variant) error {
	has, err := tx.PrepareContext(ctx, `SELECT EXISTS(SELECT 1 FROM blobs WHERE sha = ?)`)
	if err != nil {
		return err
	}
	defer has.Close()
	chunk, err := tx.PrepareContext(ctx, `INSERT INTO chunks (sha, n, data) VALUES (?, ?, ?)`)
	if err != nil {
		return err
	}
	defer chunk.Close()
	var buf []byte
	for _, b := range blobs {
		var ok bool
		if err := has.QueryRowContext(ctx, b.SHA256).Scan(&ok); err != nil {
			return err
		}
		if ok {
			continue
		}
		r, _, err := s.openBlob(ctx, b.SHA256)
		if err != nil {
			return fmt.Errorf("blob %s: %w", b.SHA256, err)
		}
		if buf == nil {
			buf = make([]byte, ChunkBytes)
		}
		h := sha256.New()
		var size int64
		for n := 0; ; n++ {
			m, err := io.ReadFull(r, buf)
			if m > 0 || (n == 0 && err == io.EOF) {
				h.Write(buf[:m])
				size += int64(m)
				if _, err := chunk.ExecContext(ctx, b.SHA256, n, buf[:m]); err != nil {
					return err
				}
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				return fmt.Errorf("blob %s: %w", b.SHA256, err)
			}
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != b.SHA256 || size != b.Size {
			return fmt.Errorf("blob %s in the object store holds %d bytes hashing to %s, not the %d bytes named", b.SHA256, size, got, b.Size)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO blobs (sha, size) VALUES (?, ?)`, b.SHA256, size); err != nil {
			return err
		}
	}
	return nil
}

// loadManifest reads a manifest stored as a blob (DeployRecorded version
// 2), checked against its hash and size, and checks what the event's
// schema checks for an inline one: the blob was not validated on append.
func (s *Service) loadManifest(ctx context.Context, ref Variant) (Manifest, error) {
	var m Manifest
	if ref.Size > MaxManifestBlobBytes {
		return m, fmt.Errorf("manifest blob %s: %d bytes, at most %d", ref.SHA256, ref.Size, MaxManifestBlobBytes)
	}
	r, _, err := s.openBlob(ctx, ref.SHA256)
	if err != nil {
		return m, fmt.Errorf("manifest blob %s: %w", ref.SHA256, err)
	}
	b, err := readAll(io.LimitReader(r, ref.Size+1), nil)
	if err != nil {
		return m, fmt.Errorf("manifest blob %s: %w", ref.SHA256, err)
	}
	if got := Hash(b); got != ref.SHA256 || int64(len(b)) != ref.Size {
		return m, fmt.Errorf("manifest blob %s in the object store holds %d bytes hashing to %s, not the %d bytes named", ref.SHA256, len(b), got, ref.Size)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("manifest blob %s: %w", ref.SHA256, err)
	}
	if len(m.Files) == 0 {
		return m, fmt.Errorf("manifest blob %s holds no files", ref.SHA256)
	}
	for p, f := range m.Files {
		if err := ValidatePath(p); err != nil {
			return m, fmt.Errorf("manifest blob %s: %w", ref.SHA256, err)
		}
		ok := ValidHash(f.SHA256) && f.Size >= 0 && len(f.Type) <= MaxTypeBytes
		for _, v := range []*Variant{f.Gzip, f.Br} {
			ok = ok && (v == nil || (ValidHash(v.SHA256) && v.Size >= 0))
		}
		if !ok {
			return m, fmt.Errorf("manifest blob %s: file %q: bad hash, size or type", ref.SHA256, clip(p))
		}
	}
	for _, p := range []string{m.Fallback, m.NotFound} {
		if _, ok := m.Files[p]; p != "" && !ok {
			return m, fmt.Errorf("manifest blob %s: %q is not a file of the manifest", ref.SHA256, clip(p))
		}
	}
	return m, nil
}
