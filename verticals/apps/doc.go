// Package apps is the hosting vertical: deploy a folder as an app, see
// it live at once at http://NAME.localhost:PORT/, never see half a
// deploy, go back to any earlier deploy in one command. It is built on
// the vfs service (package kernel/vfs: blobs, deploys as events, the vfs
// read model, ServeSite), which stores and serves the files; this
// package adds the deploy API, app names, aliases and custom domains,
// and serving by Host on the kernel's listener.
//
// # Usage
//
//	k := kernel.New("./data")
//	files, err := vfs.Register(k, vfs.Config{})
//	err = apps.Register(k, files, apps.Config{})  // before k.Open
//
// cmd/fazt wires both; `fazt deploy DIR --app NAME` and `fazt apps …`
// are clients of the API below.
//
// # Deploying
//
// The shape the hosted platforms proved: the client sends its manifest,
// learns which blobs the server lacks, uploads only those, and
// finalises. A redeploy that changes one file uploads one blob. All
// routes are admin routes (the API token is required).
//
//   - POST /v1/apps/{app}/manifest, a DeployRequest {"files": {path:
//     {"sha256", "size"}}, "fallback"?, "not_found"?}: checks it
//     (paths as vfs.ValidatePath, hashes, sizes, fallback and not_found
//     among the files) and answers {"missing": [hashes]}. Nothing is
//     written.
//   - PUT /v1/apps/{app}/blobs/{sha256}: the file's bytes, stored once
//     checked against the hash (vfs.PutBlob; a mismatch is 400 and
//     stores nothing). The body is at most Config.MaxUploadBytes and the
//     vfs service's MaxBlobBytes (both 100 MiB by default; 413 beyond);
//     the other routes keep the kernel's MaxBodyBytes.
//   - POST /v1/apps/{app}/deploys, the same body: records the deploy and
//     makes it live in one atomic append (vfs.Deploy) and answers 201
//     {"id", "app", "files", "url"}. A manifest naming a blob not stored
//     is 400 listing the hashes, and nothing is recorded. When it
//     returns, requests are answered from the new deploy.
//
// The first deploy of a name creates the app. An interrupted deploy (the
// client or the server killed before the finalising POST) leaves nothing
// visible: blobs alone serve nothing, and running the deploy again
// uploads only the blobs still missing.
//
// # Apps
//
//   - GET /v1/apps, GET /v1/apps/{app}: apps (App): the live deploy,
//     whether deleted, the number of deploys, aliases, domains, URL.
//   - GET /v1/apps/{app}/deploys: the deploys, newest first, the live
//     one marked (vfs.Service.History).
//   - POST /v1/apps/{app}/rollback {"to"?}: make deploy "to" live, by
//     default the one recorded before the live one (vfs.Activate).
//   - DELETE /v1/apps/{app}: a tombstone (vfs.Delete): the app serves
//     nothing, its history stays, and a rollback --to or a deploy brings
//     it back. Its aliases and domains stay bound.
//   - POST /v1/apps/{app}/aliases {"alias"}, DELETE …/aliases/{alias}:
//     ALIAS.localhost serves the app too. An alias is a name no app has.
//   - POST /v1/apps/{app}/domains {"domain"}, DELETE …/domains/{domain}:
//     a custom domain bound to the app (NormalizeDomain: lower-case,
//     IDNs in punycode, no IPs, wildcards or .localhost). The kernel's
//     listener serves it by Host now, and the edge (kernel/edge)
//     certifies and serves it on the public listeners.
//
// A name (an alias or a domain) is bound to one app at a time; binding
// it to another is 409 refused. App names and aliases share one
// namespace (both are NAME.localhost): an alias is a name no app has,
// and a new app's name no alias holds. Names are claimed on the log,
// not under a lock of one process, so this holds across the nodes of a
// cluster and several fazt processes on one NATS server: each name has
// a stream of its own (NameStream, category NamesCategory), and
// claiming it appends TypeNameClaimed there expecting the version the
// claimant read, in one atomic append with the event that binds it. Of
// two claims at once, on any nodes, one lands; the other reads the
// stream again and is answered 409 naming the holder. Removing an alias
// or a domain appends TypeNameReleased the same way, and the name is
// free again; a deleted app keeps its name (a deploy brings it back).
// The first deploy of a new app claims its name (two first deploys of
// one app at once both land: the second is its redeploy). Names bound
// before claims existed have no stream: the read model decides for
// them, as before. Names are events of the category
// Category on the app's stream AppStream(app) (TypeAliasAdded,
// TypeAliasRemoved, TypeDomainAdded, TypeDomainRemoved); only the
// vertical writes there. The projection "apps" folds them with the vfs
// service's deploy events into the tables apps and hosts.
//
// # Serving
//
// Register sets the kernel's host router (kernel.Kernel.RouteHost). The
// Host header is read strictly (ParseHost: port dropped, lower-cased,
// one trailing dot dropped):
//
//   - NAME.localhost serves app NAME, ALIAS.localhost the app it is an
//     alias of, through vfs.Service.ServeSite; an unknown name is 404.
//   - A malformed name under .localhost (a.b.localhost, non-ASCII,
//     "_x.localhost") is 400: it reaches neither an app nor the API.
//   - A bound custom domain serves its app.
//   - Every other host (127.0.0.1, localhost, unbound names) reaches
//     the API exactly as before; so does every host but NAME.localhost
//     while the apps projection cannot be read (the API stays reachable
//     to repair it; NAME.localhost then answers the error, 503).
//
// Path handling, caching headers, compression and ranges are
// ServeSite's (see package vfs). The aliases and domains are held in
// memory, so routing a request costs no SQLite read.
//
// Routes (NewRoutes) is the same read model for the public edge
// (kernel/edge.Routes): the apps with a live deploy (NAME.<domain>),
// their aliases (ALIAS.<domain>) and custom domains, the event types
// that change them, and the name each event binds, for which the edge
// obtains a certificate at once.
package apps
