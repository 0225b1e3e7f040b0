package apps

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel/vfs"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
)

// projectionName is the read model's name: one SQLite file.
const projectionName = "apps"

// Host kinds in the hosts table.
const (
	kindAlias  = "alias"
	kindDomain = "domain"
)

// tablesV1 are the tables of projection version 1. Shipped declarations
// never change; a later version appends nullable columns and new tables.
func tablesV1() []schemas.Table {
	text := func(name string) schemas.Column { return schemas.Column{Name: name, Type: "TEXT", NotNull: true} }
	integer := func(name string) schemas.Column { return schemas.Column{Name: name, Type: "INTEGER", NotNull: true} }
	key := func(name string) schemas.Column {
		return schemas.Column{Name: name, Type: "TEXT", NotNull: true, PrimaryKey: true}
	}
	return []schemas.Table{
		// Every app ever deployed, its live deploy (NULL: none) and
		// whether it is deleted (a tombstone; its deploys stay).
		{Name: "apps", Columns: []schemas.Column{
			key("name"),
			{Name: "live", Type: "TEXT"},
			{Name: "deleted", Type: "INTEGER", NotNull: true, Default: "0"},
			integer("deploys"),
			text("updated"), // RFC 3339: the last deploy, activation or deletion
			integer("seq"),
		}},
		// The names an app answers to besides its own: aliases
		// (ALIAS.localhost) and custom domains.
		{Name: "hosts", Columns: []schemas.Column{
			key("host"), text("app"), text("kind"), integer("seq"),
		}, Indexes: []schemas.Index{{Name: "hosts_app", Columns: []string{"app", "kind"}}}},
	}
}

func (v *vertical) projection() projections.Projection {
	return projections.Projection{
		Name:    projectionName,
		Version: 1,
		Tables:  tablesV1(),
		Filter: eventlog.Filter{Types: []string{vfs.TypeDeployRecorded, vfs.TypeDeployActivated, vfs.TypeSiteDeleted,
			TypeAliasAdded, TypeAliasRemoved, TypeDomainAdded, TypeDomainRemoved}},
		Apply: v.apply,
	}
}

func (v *vertical) apply(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
	switch e.Type {
	case TypeAliasAdded, TypeAliasRemoved, TypeDomainAdded, TypeDomainRemoved:
		// Before the change commits: the host map in memory is reloaded
		// by the next request, from a read that waits for this commit.
		// So changes written by another node, or replayed by a rebuild,
		// route too.
		v.hosts.changed()
	}
	at := e.Time.UTC().Format(time.RFC3339Nano)
	exec := func(q string, args ...any) error {
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	}
	switch e.Type {
	case vfs.TypeDeployRecorded:
		var d struct {
			Site string `json:"site"`
		}
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return fmt.Errorf("decode %s: %w", e.Type, err)
		}
		return exec(`INSERT INTO apps (name, deploys, updated, seq) VALUES (?, 1, ?, ?)
			ON CONFLICT (name) DO UPDATE SET deploys = deploys + 1, updated = excluded.updated, seq = excluded.seq`, d.Site, at, e.Seq)
	case vfs.TypeDeployActivated:
		var a vfs.DeployActivated
		if err := json.Unmarshal(e.Data, &a); err != nil {
			return fmt.Errorf("decode %s: %w", e.Type, err)
		}
		return exec(`UPDATE apps SET live = ?, deleted = 0, updated = ?, seq = ? WHERE name = ?`, a.Deploy, at, e.Seq, a.Site)
	case vfs.TypeSiteDeleted:
		var d vfs.SiteDeleted
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return fmt.Errorf("decode %s: %w", e.Type, err)
		}
		return exec(`UPDATE apps SET live = NULL, deleted = 1, updated = ?, seq = ? WHERE name = ?`, at, e.Seq, d.Site)
	case TypeAliasAdded, TypeAliasRemoved:
		var a AliasChanged
		if err := json.Unmarshal(e.Data, &a); err != nil {
			return fmt.Errorf("decode %s: %w", e.Type, err)
		}
		if e.Type == TypeAliasRemoved {
			return exec(`DELETE FROM hosts WHERE host = ? AND app = ? AND kind = ?`, a.Alias, a.App, kindAlias)
		}
		return exec(`INSERT INTO hosts (host, app, kind, seq) VALUES (?, ?, ?, ?)
			ON CONFLICT (host) DO UPDATE SET app = excluded.app, kind = excluded.kind, seq = excluded.seq`, a.Alias, a.App, kindAlias, e.Seq)
	case TypeDomainAdded, TypeDomainRemoved:
		var d DomainChanged
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return fmt.Errorf("decode %s: %w", e.Type, err)
		}
		if e.Type == TypeDomainRemoved {
			return exec(`DELETE FROM hosts WHERE host = ? AND app = ? AND kind = ?`, d.Domain, d.App, kindDomain)
		}
		return exec(`INSERT INTO hosts (host, app, kind, seq) VALUES (?, ?, ?, ?)
			ON CONFLICT (host) DO UPDATE SET app = excluded.app, kind = excluded.kind, seq = excluded.seq`, d.Domain, d.App, kindDomain, e.Seq)
	}
	return nil
}
