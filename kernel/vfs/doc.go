// Package vfs is the kernel's DB-backed file system for sites: the
// storage and serving half of hosting. Contents are blobs named by their
// SHA-256, a deploy is an event carrying its manifest, making a deploy
// live is another event, and a projection serves each site's live
// deploy from SQLite. It is a service: cmd/fazt registers it on the
// kernel (the kernel package never imports it), and the hosting
// vertical builds its deploy API, app names and host routing on it.
//
// # Usage
//
//	k := kernel.New("./data")
//	svc, err := vfs.Register(k, vfs.Config{})  // before k.Open
//	...
//	// A client sends its manifest; the server answers what it lacks.
//	missing, err := svc.Missing(ctx, hashes)
//	for _, h := range missing {
//		err = svc.PutBlob(ctx, h, body)        // checked against h
//	}
//	id, err := svc.Deploy(ctx, "blog", vfs.Manifest{Files: files})  // recorded and live
//	err = svc.Activate(ctx, "blog", earlierID)  // rollback
//	http.Handle("/", svc.SiteHandler("blog"))  // or svc.ServeSite(w, r, site)
//
// The package's Example is a complete program.
//
// # Blobs
//
// A blob is the content of a file, named by the lower-case hex SHA-256
// of its bytes, in the JetStream object store bucket Bucket on the log's
// own NATS server (eventlog.Log.ObjectStore: embedded like the log, with
// the log's replicas; NATS listener clients can neither read nor write
// it). PutBlob reads the upload (at most Config.MaxBlobBytes; more is
// ErrInvalid with an *http.MaxBytesError, which the kernel answers 413),
// in memory up to 1 MiB and in an unlinked temporary file beyond,
// hashes it, and stores it only when the hash matches (else ErrInvalid,
// nothing stored). A stored blob is never written again, changed or
// deleted through the service: storage only grows. Missing returns the
// hashes of a list that are not stored, so a redeploy that changes one
// file of 5,000 uploads one blob.
//
// Durability: the log's group commit fsyncs only the event stream, and
// under strict durability the embedded server fsyncs nothing by itself.
// So PutBlob calls eventlog.Log.SyncObjectStore after the object store
// acknowledged the blob and before it returns: that fsyncs the bucket's
// stream's message blocks written since the last call (the first call
// of a process: every block, including those an earlier process wrote),
// and their folder when a block appeared; concurrent uploads share
// fsyncs. RecordDeploy and Deploy call it once more just before
// appending the deploy event, which also covers the compressed variants
// the deploy made (stored without an fsync each). So a deploy
// event is appended only after every blob it names is on disk: no crash
// keeps the event and loses a blob. Under relaxed durability blobs, like
// events, are fsynced every second; with an external NATS server
// (kernel.Kernel.NATSURL) durability is that server's.
//
// # Deploys
//
// Events, on the site's stream SiteStream(site) ("vfs.<site>"), in the
// category Category, which the service reserves: only its own code
// appends there (an append through POST /v1/events is refused).
//
//   - TypeDeployRecorded (DeployRecorded): the deploy's ULID and its
//     manifest: path → SHA-256, size, content type, and the gzip and
//     brotli variants' hashes and sizes; Fallback and NotFound paths.
//     A manifest that does not fit in one event (MaxManifestBytes, the
//     log's limit, about 3,000 files with variants) is stored as a blob
//     of its own before the event, which then names it in ManifestBlob
//     with Files empty (schema version 2; version 1 stays the form of
//     every deploy that fits). The fold reads and checks that blob (hash,
//     size, paths, hashes) and halts at the event if it is bad. A binary
//     older than version 2 reads such a deploy as one with no files.
//   - TypeDeployActivated (DeployActivated): the deploy serves the site
//     from now on. Rollback is activating an earlier deploy.
//   - TypeSiteDeleted (SiteDeleted): a tombstone; the site serves
//     nothing until a deploy is activated again, and its history stays.
//
// RecordDeploy checks the manifest at the API, before anything is
// written: the site is [a-z0-9][a-z0-9-]{0,62}; 1 to Config.MaxFiles
// files; paths are relative, clean, "/"-separated, UTF-8 without
// control characters or backslashes, with no empty, "." or ".."
// segment, at most MaxPathBytes (ValidatePath); sizes match the stored
// blobs; variants are the server's to make; Fallback and NotFound name
// files of the manifest; the encoded manifest is at most
// Config.MaxManifestBlobBytes.
// A manifest naming blobs not stored is a *MissingError (ErrInvalid)
// listing them. The server fills an empty content type from the
// extension (a fixed table for web files, then the system's), else by
// sniffing the content, and makes gzip (best compression) and brotli
// (github.com/andybalholm/brotli, pure Go, Config.BrotliQuality) variants of
// compressible types (text/*, JavaScript, JSON, XML, SVG, wasm, fonts
// and icons) from 256 bytes to Config.MaxCompressBytes, kept when at
// most 95% of the size, on every core. The variants are blobs of their
// own, fsynced together just before the deploy event, and a
// redeploy reuses those made for the same content. Deploy records and
// activates in one atomic append. Every write returns once the vfs
// projection has folded it: when Deploy or Activate returns, requests
// are answered from the new deploy.
//
// # Projection
//
// The projection "vfs" (one SQLite file, like every read model) holds
// sites (the live deploy of each), deploys, files (each deploy's paths
// with blob, size, type and variants), activations, and the blob bytes
// themselves: blobs (each once, however many deploys name it) and
// chunks, rows of ChunkBytes, so a large file streams and a Range read
// touches only the chunks it needs. Folding a deploy copies the blobs
// the file lacks from the object store, checking each against its hash.
// Like every projection it is rebuilt from the log (and the blobs) when
// asked, with the same rows.
//
// # Serving
//
// ServeSite answers a GET or HEAD for a site from its live deploy. The
// live deploy and the file a path resolves to are read in one read
// transaction, so a request is answered from one deploy even while
// another is activated; the bytes are then read by hash, which never
// changes, through a memory cache of chunks bounded by
// Config.CacheBytes. What a path resolved to is remembered (at most
// 20,000 paths) with the checkpoint of the snapshot it was read from,
// and used only while the fold has begun no vfs event past that
// checkpoint: the fold raises that mark before it commits, so a cached
// answer never outlives the deploy it came from, and a hot path costs no
// SQLite read at all. What it does:
//
//   - "/" and "/dir/" serve index.html of the folder; "/about" serves
//     about, else about.html, else redirects (301) to "/about/" when
//     about/index.html exists.
//   - No file: the manifest's Fallback with 200 (a single-page app),
//     else its NotFound page with 404, else a plain 404. An unknown site
//     or one without a live deploy is a plain 404.
//   - Content-Type from the manifest; X-Content-Type-Options: nosniff;
//     a strong ETag, the served blob's hash, so If-None-Match answers
//     304; Last-Modified, the deploy's time; HEAD; single and multiple
//     ranges (206, 416), of the identity bytes. http.ServeContent does
//     the conditional and range handling.
//   - The brotli or gzip variant when Accept-Encoding accepts it (brotli
//     first; q=0 refuses), with Content-Encoding and Vary:
//     Accept-Encoding on every file that has variants.
//   - Cache-Control: no-cache for HTML; "public, max-age=31536000,
//     immutable" for fingerprinted names (app.3f2a9c1d.js,
//     index-BdX3k9aZ.css); otherwise "public, max-age=0,
//     must-revalidate" (a cheap 304 on the ETag).
//   - Encoded slashes, backslashes or NUL (%2f, %5c, %00), "." and ".."
//     segments, control characters, bytes that are not UTF-8 and paths
//     over MaxPathBytes are 400; empty segments ("//") are 404. Nothing
//     outside the deploy's manifest can be named at all: paths are keys,
//     not file system paths.
//   - Memory stays bounded: a body is read a chunk at a time.
package vfs
