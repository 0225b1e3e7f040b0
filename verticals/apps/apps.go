package apps

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/vfs"
	"github.com/fazt-sh/fazt/projections"
)

// DefaultMaxWait bounds how long the admin reads wait for the
// projection to catch up with the log (Config.MaxWait).
const DefaultMaxWait = 10 * time.Second

// The paths of the vertical's routes, for its clients (the package doc
// says what each answers).
const (
	AppsPath = "/v1/apps" // GET lists the apps
)

// AppPath is an app's path: GET shows it, DELETE deletes it.
func AppPath(app string) string { return AppsPath + "/" + url.PathEscape(app) }

// ManifestPath is where a client posts its manifest to learn which blobs
// the server lacks.
func ManifestPath(app string) string { return AppPath(app) + "/manifest" }

// BlobPath is where a client PUTs one blob, named by its SHA-256.
func BlobPath(app, hash string) string { return AppPath(app) + "/blobs/" + url.PathEscape(hash) }

// DeploysPath: POST finalises a deploy (recorded and live), GET lists
// the app's deploys.
func DeploysPath(app string) string { return AppPath(app) + "/deploys" }

// RollbackPath: POST makes an earlier deploy live.
func RollbackPath(app string) string { return AppPath(app) + "/rollback" }

// AliasesPath: POST adds an alias; AliasesPath(app)+"/"+alias, DELETE
// removes it.
func AliasesPath(app string) string { return AppPath(app) + "/aliases" }

// DomainsPath: POST binds a custom domain; DomainsPath(app)+"/"+domain,
// DELETE unbinds it.
func DomainsPath(app string) string { return AppPath(app) + "/domains" }

// Config tunes the vertical. The zero value is ready to use.
type Config struct {
	// MaxUploadBytes bounds the body of a blob upload
	// (vfs.DefaultMaxBlobBytes; the vfs service's MaxBlobBytes bounds it
	// too).
	MaxUploadBytes int64
	// MaxWait bounds how long the admin reads wait for the projection to
	// catch up with the log (DefaultMaxWait); past it they answer 503.
	MaxWait time.Duration
}

// vertical is one registration of the apps vertical on a kernel.
type vertical struct {
	k     *kernel.Kernel
	files *vfs.Service
	cfg   Config
	w     *eventlog.Writer
	hosts hostMap
}

// Register declares the apps vertical on k, before k.Open, on the vfs
// service files (vfs.Register on the same kernel): its event types, its
// projection, its routes, the category "apps" (only the vertical writes
// there), and the kernel's host router (see the package doc).
func Register(k *kernel.Kernel, files *vfs.Service, cfg Config) error {
	if files == nil {
		return fmt.Errorf("apps: %w: no vfs service: register vfs first and pass its *vfs.Service", eventlog.ErrInvalid)
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if cfg.MaxUploadBytes <= 0 {
		cfg.MaxUploadBytes = vfs.DefaultMaxBlobBytes
	}
	v := &vertical{k: k, files: files, cfg: cfg}
	v.hosts.load = v.loadHosts
	for _, s := range eventSchemas {
		if err := k.RegisterEvent(s.typ, s.version, []byte(s.schema)); err != nil {
			return fmt.Errorf("apps: %w", err)
		}
	}
	if err := k.RegisterProjection(v.projection()); err != nil {
		return fmt.Errorf("apps: %w", err)
	}
	w, err := k.Log().Reserve(Category, NamesCategory)
	if err != nil {
		return fmt.Errorf("apps: %w", err)
	}
	v.w = w
	routes := []struct {
		pattern string
		h       func(w http.ResponseWriter, r *http.Request) error
	}{
		{"GET " + AppsPath, v.list},
		{"GET /v1/apps/{app}", v.show},
		{"DELETE /v1/apps/{app}", v.remove},
		{"POST /v1/apps/{app}/manifest", v.manifest},
		{"PUT /v1/apps/{app}/blobs/{hash}", v.putBlob},
		{"POST /v1/apps/{app}/deploys", v.deploy},
		{"GET /v1/apps/{app}/deploys", v.history},
		{"POST /v1/apps/{app}/rollback", v.rollback},
		{"POST /v1/apps/{app}/aliases", v.addAlias},
		{"DELETE /v1/apps/{app}/aliases/{alias}", v.removeAlias},
		{"POST /v1/apps/{app}/domains", v.addDomain},
		{"DELETE /v1/apps/{app}/domains/{domain}", v.removeDomain},
	}
	for _, rt := range routes {
		h := rt.h
		handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := h(w, r); err != nil {
				k.WriteError(w, r, err)
			}
		})
		var err error
		if strings.HasPrefix(rt.pattern, "PUT ") {
			// Uploads: a file may be larger than the API's other bodies.
			err = k.HandleBody(rt.pattern, handler, cfg.MaxUploadBytes)
		} else {
			err = k.Handle(rt.pattern, handler)
		}
		if err != nil {
			return fmt.Errorf("apps: %w", err)
		}
	}
	if err := k.RouteHost(v.route); err != nil {
		return fmt.Errorf("apps: %w", err)
	}
	return nil
}

// App is an app as the API shows it.
type App struct {
	Name    string    `json:"name"`
	Live    string    `json:"live,omitempty"` // the live deploy's id; "": none
	Deleted bool      `json:"deleted"`
	Deploys int       `json:"deploys"`
	Updated time.Time `json:"updated"`
	Aliases []string  `json:"aliases"`
	Domains []string  `json:"domains"`
	URL     string    `json:"url"` // where the kernel's listener serves it
}

// DeployRequest is the body of POST …/manifest and POST …/deploys: the
// files by path (each its sha256 and size; the server chooses content
// types and makes compressed variants), and the optional fallback
// (single-page apps) and not-found pages.
type DeployRequest = vfs.Manifest

// ManifestResponse answers POST …/manifest: the blobs to upload.
type ManifestResponse struct {
	Missing []string `json:"missing"`
	Files   int      `json:"files"`
}

// DeployResponse answers POST …/deploys.
type DeployResponse struct {
	ID    string `json:"id"`
	App   string `json:"app"`
	Files int    `json:"files"`
	URL   string `json:"url"`
}

// RollbackRequest is the body of POST …/rollback; To empty: the deploy
// made before the live one.
type RollbackRequest struct {
	To string `json:"to,omitempty"`
}

// AliasRequest is the body of POST …/aliases.
type AliasRequest struct {
	Alias string `json:"alias"`
}

// DomainRequest is the body of POST …/domains.
type DomainRequest struct {
	Domain string `json:"domain"`
}

// appName checks the {app} of a route.
func appName(r *http.Request) (string, error) {
	app := r.PathValue("app")
	if !vfs.ValidSite(app) {
		return "", kernel.Invalidf("app %q: names are [a-z0-9][a-z0-9-]{0,62} (they are host names: NAME.localhost)", clip(app))
	}
	return app, nil
}

// appURL is where the kernel's listener serves app, with the port the
// client reached it on.
func appURL(r *http.Request, app string) string {
	port := ""
	if _, p, err := net.SplitHostPort(r.Host); err == nil {
		port = ":" + p
	}
	return "http://" + app + LocalSuffix + port + "/"
}

// checkManifest refuses what vfs would, before anything is uploaded.
func checkManifest(m *vfs.Manifest) error {
	if len(m.Files) == 0 {
		return kernel.Invalidf("the manifest has no files")
	}
	for p, f := range m.Files {
		if err := vfs.ValidatePath(p); err != nil {
			return err
		}
		if !vfs.ValidHash(f.SHA256) {
			return kernel.Invalidf("file %q: sha256 %q: want 64 lower-case hex digits", clip(p), clip(f.SHA256))
		}
		if f.Size < 0 {
			return kernel.Invalidf("file %q: negative size %d", clip(p), f.Size)
		}
		if f.Gzip != nil || f.Br != nil {
			return kernel.Invalidf("file %q: the server makes the compressed variants; leave gzip and br out", clip(p))
		}
	}
	for _, x := range []struct{ name, p string }{{"fallback", m.Fallback}, {"not_found", m.NotFound}} {
		if _, ok := m.Files[x.p]; x.p != "" && !ok {
			return kernel.Invalidf("%s %q is not a file of the manifest", x.name, clip(x.p))
		}
	}
	return nil
}

// claimable refuses a new app name that an alias holds.
func (v *vertical) claimable(ctx context.Context, app string) error {
	hosts, err := v.hosts.get(ctx)
	if err != nil {
		return err
	}
	if owner, ok := hosts[app]; ok {
		return kernel.Refusef("%s is an alias of app %s: remove it first (fazt apps alias remove %s %s)", app, owner, owner, app)
	}
	return nil
}

// readManifest reads the app's name from the path and its manifest from
// the body, checked.
func readManifest(w http.ResponseWriter, r *http.Request) (string, vfs.Manifest, error) {
	var m vfs.Manifest
	app, err := appName(r)
	if err != nil {
		return "", m, err
	}
	if err := kernel.DecodeJSON(w, r, &m); err != nil {
		return "", m, err
	}
	return app, m, checkManifest(&m)
}

func (v *vertical) manifest(w http.ResponseWriter, r *http.Request) error {
	app, m, err := readManifest(w, r)
	if err != nil {
		return err
	}
	if err := v.claimable(r.Context(), app); err != nil {
		return err
	}
	hashes := make([]string, 0, len(m.Files))
	for _, f := range m.Files {
		hashes = append(hashes, f.SHA256)
	}
	missing, err := v.files.Missing(r.Context(), hashes)
	if err != nil {
		return err
	}
	kernel.WriteJSON(w, http.StatusOK, ManifestResponse{Missing: append([]string{}, missing...), Files: len(m.Files)})
	return nil
}

func (v *vertical) putBlob(w http.ResponseWriter, r *http.Request) error {
	if _, err := appName(r); err != nil {
		return err
	}
	h := r.PathValue("hash")
	if !vfs.ValidHash(h) {
		return kernel.Invalidf("blob %q: name a blob by the SHA-256 of its content, 64 lower-case hex digits", clip(h))
	}
	if err := v.files.PutBlob(r.Context(), h, r.Body); err != nil {
		return err
	}
	kernel.WriteJSON(w, http.StatusOK, map[string]string{"sha256": h})
	return nil
}

func (v *vertical) deploy(w http.ResponseWriter, r *http.Request) error {
	app, m, err := readManifest(w, r)
	if err != nil {
		return err
	}
	existing, err := v.apps(r.Context(), app)
	if err != nil {
		return err
	}
	if len(existing) == 0 {
		// A new name: claimed on the log (see NameStream), so that an
		// alias claimed at the same moment, on any node, and this app
		// do not both get it. A second first deploy of the same app is
		// its redeploy. Blobs are checked first, so that a deploy bound
		// to fail claims nothing.
		if err := v.checkBlobs(r.Context(), &m); err != nil {
			return err
		}
		legacy := func(ctx context.Context) (bool, error) { return false, v.claimable(ctx, app) }
		if _, _, err := v.claimName(r.Context(), kindApp, app, app, legacy, nil); err != nil {
			return err
		}
	}
	id, err := v.files.Deploy(r.Context(), app, m)
	if err != nil {
		return err
	}
	kernel.WriteJSON(w, http.StatusCreated, DeployResponse{ID: id, App: app, Files: len(m.Files), URL: appURL(r, app)})
	return nil
}

// apps reads apps from the projection: one (name set) or all.
func (v *vertical) apps(ctx context.Context, name string) ([]App, error) {
	var out []App
	err := v.read(ctx, func(ctx context.Context, tx *sql.Tx) error {
		q, args := `SELECT name, COALESCE(live, ''), deleted, deploys, updated FROM apps`, []any{}
		if name != "" {
			q, args = q+` WHERE name = ?`, append(args, name)
		}
		rows, err := tx.QueryContext(ctx, q+` ORDER BY name`, args...)
		if err != nil {
			return err
		}
		idx := map[string]int{}
		for rows.Next() {
			var a App
			var updated string
			if err := rows.Scan(&a.Name, &a.Live, &a.Deleted, &a.Deploys, &updated); err != nil {
				rows.Close()
				return err
			}
			a.Updated, _ = time.Parse(time.RFC3339Nano, updated)
			a.Aliases, a.Domains = []string{}, []string{}
			idx[a.Name] = len(out)
			out = append(out, a)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		hq := `SELECT host, app, kind FROM hosts`
		if name != "" {
			hq += ` WHERE app = ?`
		}
		hrows, err := tx.QueryContext(ctx, hq+` ORDER BY host`, args...)
		if err != nil {
			return err
		}
		defer hrows.Close()
		for hrows.Next() {
			var h, app, kind string
			if err := hrows.Scan(&h, &app, &kind); err != nil {
				return err
			}
			i, ok := idx[app]
			if !ok {
				continue
			}
			if kind == kindAlias {
				out[i].Aliases = append(out[i].Aliases, h)
			} else {
				out[i].Domains = append(out[i].Domains, h)
			}
		}
		return hrows.Err()
	})
	return out, err
}

// existing returns app, or ErrNotFound.
func (v *vertical) existing(ctx context.Context, app string) (App, error) {
	as, err := v.apps(ctx, app)
	if err != nil {
		return App{}, err
	}
	if len(as) == 0 {
		return App{}, kernel.NotFoundf("no app %s: deploy it first (fazt deploy DIR --app %s)", app, app)
	}
	return as[0], nil
}

func (v *vertical) list(w http.ResponseWriter, r *http.Request) error {
	if _, err := kernel.CheckQuery(r); err != nil {
		return err
	}
	as, err := v.apps(r.Context(), "")
	if err != nil {
		return err
	}
	for i := range as {
		as[i].URL = appURL(r, as[i].Name)
	}
	kernel.WriteJSON(w, http.StatusOK, map[string]any{"apps": append([]App{}, as...)})
	return nil
}

func (v *vertical) show(w http.ResponseWriter, r *http.Request) error {
	app, err := appName(r)
	if err != nil {
		return err
	}
	a, err := v.existing(r.Context(), app)
	if err != nil {
		return err
	}
	a.URL = appURL(r, app)
	kernel.WriteJSON(w, http.StatusOK, a)
	return nil
}

func (v *vertical) history(w http.ResponseWriter, r *http.Request) error {
	app, err := appName(r)
	if err != nil {
		return err
	}
	ds, err := v.files.History(r.Context(), app)
	if err != nil {
		return err
	}
	kernel.WriteJSON(w, http.StatusOK, map[string]any{"app": app, "deploys": ds})
	return nil
}

func (v *vertical) rollback(w http.ResponseWriter, r *http.Request) error {
	app, err := appName(r)
	if err != nil {
		return err
	}
	var req RollbackRequest
	if err := kernel.DecodeJSON(w, r, &req); err != nil {
		return err
	}
	ds, err := v.files.History(r.Context(), app)
	if err != nil {
		return err
	}
	to := req.To
	if to == "" {
		live := -1
		for i, d := range ds {
			if d.Live {
				live = i
			}
		}
		switch {
		case live < 0:
			return kernel.Refusef("app %s has no live deploy to roll back from: name the deploy to make live with --to (fazt apps history %s)", app, app)
		case live == len(ds)-1:
			return kernel.Refusef("app %s's live deploy %s is its first: there is nothing earlier to roll back to", app, ds[live].ID)
		}
		to = ds[live+1].ID
	}
	if err := v.files.Activate(r.Context(), app, to); err != nil {
		return err
	}
	kernel.WriteJSON(w, http.StatusOK, map[string]string{"app": app, "live": to, "url": appURL(r, app)})
	return nil
}

func (v *vertical) remove(w http.ResponseWriter, r *http.Request) error {
	app, err := appName(r)
	if err != nil {
		return err
	}
	if err := v.files.Delete(r.Context(), app); err != nil {
		if errors.Is(err, eventlog.ErrNotFound) {
			return kernel.NotFoundf("no app %s", app)
		}
		return err
	}
	kernel.WriteJSON(w, http.StatusOK, map[string]any{"app": app, "deleted": true})
	return nil
}

// bind adds (add) or removes a name of app: an alias or a domain. The
// name is claimed or released on the log with the event that binds or
// unbinds it, in one append (see NameStream).
func (v *vertical) bind(w http.ResponseWriter, r *http.Request, app, host, kind string, add bool) error {
	ctx := r.Context()
	if _, err := v.existing(ctx, app); err != nil {
		return err
	}
	// What the read model says decides for names bound before claims
	// existed (no name stream).
	legacy := func(ctx context.Context) (bool, error) {
		hosts, err := v.hosts.get(ctx)
		if err != nil {
			return false, err
		}
		owner, bound := hosts[host]
		switch {
		case bound && owner == app:
			return true, nil
		case bound:
			return false, kernel.Refusef("%s %s is bound to app %s: remove it there first", kind, host, owner)
		case kind == kindAlias:
			as, err := v.apps(ctx, host)
			if err != nil {
				return false, err
			}
			if len(as) > 0 {
				return false, kernel.Refusef("%s is an app's own name: an alias must be a name no app has", host)
			}
		}
		return false, nil
	}
	var typ string
	var data any
	if kind == kindAlias {
		typ, data = TypeAliasRemoved, AliasChanged{App: app, Alias: host}
		if add {
			typ = TypeAliasAdded
		}
	} else {
		typ, data = TypeDomainRemoved, DomainChanged{App: app, Domain: host}
		if add {
			typ = TypeDomainAdded
		}
	}
	b, _ := json.Marshal(data)
	events := []eventlog.Event{{Stream: AppStream(app), Type: typ, Data: b}}
	var res eventlog.Result
	if add {
		var already bool
		var err error
		if res, already, err = v.claimName(ctx, kind, host, app, legacy, events); err != nil {
			return err
		} else if already {
			kernel.WriteJSON(w, http.StatusOK, map[string]string{"app": app, kind: host})
			return nil
		}
	} else {
		hosts, err := v.hosts.get(ctx)
		if err != nil {
			return err
		}
		var found bool
		if res, found, err = v.releaseName(ctx, kind, host, app, hosts[host] == app, events); err != nil {
			return err
		} else if !found {
			return kernel.NotFoundf("app %s has no %s %s", app, kind, host)
		}
	}
	// Folded before the answer, so that the next request is routed by it
	// (the fold drops the host map; see hostMap).
	if _, err := v.k.Projections().Read(ctx, projectionName, projections.ReadOptions{MinSeq: res.LastSeq, MaxWait: v.cfg.MaxWait}, func(context.Context, *sql.Tx) error { return nil }); err != nil {
		return err
	}
	status := http.StatusOK
	if add {
		status = http.StatusCreated
	}
	kernel.WriteJSON(w, status, map[string]string{"app": app, kind: host})
	return nil
}

func (v *vertical) addAlias(w http.ResponseWriter, r *http.Request) error {
	app, err := appName(r)
	if err != nil {
		return err
	}
	var req AliasRequest
	if err := kernel.DecodeJSON(w, r, &req); err != nil {
		return err
	}
	alias := strings.ToLower(req.Alias)
	if !vfs.ValidSite(alias) {
		return kernel.Invalidf("alias %q: aliases are names like apps, [a-z0-9][a-z0-9-]{0,62}, served at ALIAS.localhost", clip(req.Alias))
	}
	if alias == app {
		return kernel.Invalidf("alias %s is the app's own name", alias)
	}
	return v.bind(w, r, app, alias, kindAlias, true)
}

func (v *vertical) removeAlias(w http.ResponseWriter, r *http.Request) error {
	app, err := appName(r)
	if err != nil {
		return err
	}
	alias := r.PathValue("alias")
	if !vfs.ValidSite(alias) {
		return kernel.Invalidf("alias %q: aliases are [a-z0-9][a-z0-9-]{0,62}", clip(alias))
	}
	return v.bind(w, r, app, alias, kindAlias, false)
}

func (v *vertical) addDomain(w http.ResponseWriter, r *http.Request) error {
	app, err := appName(r)
	if err != nil {
		return err
	}
	var req DomainRequest
	if err := kernel.DecodeJSON(w, r, &req); err != nil {
		return err
	}
	d, err := NormalizeDomain(req.Domain)
	if err != nil {
		return err
	}
	return v.bind(w, r, app, d, kindDomain, true)
}

func (v *vertical) removeDomain(w http.ResponseWriter, r *http.Request) error {
	app, err := appName(r)
	if err != nil {
		return err
	}
	d, err := NormalizeDomain(r.PathValue("domain"))
	if err != nil {
		return err
	}
	return v.bind(w, r, app, d, kindDomain, false)
}

// checkBlobs refuses a manifest that names blobs not stored, as
// vfs.Deploy would (*vfs.MissingError).
func (v *vertical) checkBlobs(ctx context.Context, m *vfs.Manifest) error {
	hashes := make([]string, 0, len(m.Files))
	for _, f := range m.Files {
		hashes = append(hashes, f.SHA256)
	}
	missing, err := v.files.Missing(ctx, hashes)
	if err != nil || len(missing) == 0 {
		return err
	}
	return &vfs.MissingError{Hashes: missing}
}
