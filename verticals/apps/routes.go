package apps

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/edge"
	"github.com/fazt-sh/fazt/kernel/vfs"
	"github.com/fazt-sh/fazt/projections"
)

// Routes is the vertical's read model as the edge serves it
// (edge.Routes): the apps with a live deploy (NAME.<domain>), their
// aliases (ALIAS.<domain>) and their custom domains.
type Routes struct {
	k     *kernel.Kernel
	files *vfs.Service
}

var _ edge.Routes = (*Routes)(nil)

// NewRoutes returns the routes of the apps vertical registered on k with
// files (Register).
func NewRoutes(k *kernel.Kernel, files *vfs.Service) *Routes { return &Routes{k: k, files: files} }

// Load reads the routes once the apps projection has folded the log up
// to minSeq.
func (r *Routes) Load(ctx context.Context, minSeq uint64) (edge.Table, error) {
	t := edge.Table{Aliases: map[string]string{}, Domains: map[string]string{}}
	_, err := r.k.Projections().Read(ctx, projectionName, projections.ReadOptions{MinSeq: minSeq, MaxWait: DefaultMaxWait}, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT name FROM apps WHERE live IS NOT NULL AND deleted = 0 ORDER BY name`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				rows.Close()
				return err
			}
			t.Apps = append(t.Apps, n)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		hrows, err := tx.QueryContext(ctx, `SELECT host, app, kind FROM hosts`)
		if err != nil {
			return err
		}
		defer hrows.Close()
		for hrows.Next() {
			var h, app, kind string
			if err := hrows.Scan(&h, &app, &kind); err != nil {
				return err
			}
			if kind == kindAlias {
				t.Aliases[h] = app
			} else {
				t.Domains[h] = app
			}
		}
		return hrows.Err()
	})
	return t, err
}

// Handler serves app's live deploy.
func (r *Routes) Handler(app string) http.Handler { return siteHandler{r.files, app} }

// Filter selects the events that change the routes.
func (r *Routes) Filter() eventlog.Filter {
	return eventlog.Filter{Types: []string{vfs.TypeDeployActivated, vfs.TypeSiteDeleted,
		TypeAliasAdded, TypeAliasRemoved, TypeDomainAdded, TypeDomainRemoved}}
}

// Bound returns the name an event binds: the app made live, the alias
// or the domain added.
func (r *Routes) Bound(e eventlog.Event) []string {
	switch e.Type {
	case vfs.TypeDeployActivated:
		var a vfs.DeployActivated
		if json.Unmarshal(e.Data, &a) == nil && a.Site != "" {
			return []string{a.Site}
		}
	case TypeAliasAdded:
		var a AliasChanged
		if json.Unmarshal(e.Data, &a) == nil && a.Alias != "" {
			return []string{a.Alias}
		}
	case TypeDomainAdded:
		var d DomainChanged
		if json.Unmarshal(e.Data, &d) == nil && d.Domain != "" {
			return []string{d.Domain}
		}
	}
	return nil
}
