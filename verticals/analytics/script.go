package analytics

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"
)

// snippet is the tracking script pages include (see the package doc).
//
//go:embed script.js
var snippet []byte

// snippetETag lets browsers revalidate the script without fetching it.
var snippetETag = func() string {
	sum := sha256.Sum256(snippet)
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}()

// script is GET /v1/analytics/script.js.
func (v *vertical) script(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/javascript; charset=utf-8")
	h.Set("Cache-Control", "public, max-age=3600")
	h.Set("ETag", snippetETag)
	http.ServeContent(w, r, "script.js", time.Time{}, bytes.NewReader(snippet))
}

// SnippetTag is the script tag that a site's pages include to count
// their views, for the server whose URL is base (no final slash).
func SnippetTag(base, site string) string {
	return fmt.Sprintf(`<script defer data-site="%s" src="%s%s"></script>`, site, base, ScriptPath)
}
