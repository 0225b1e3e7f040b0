package kernel

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/fazt-sh/fazt/eventlog"
)

// MaxSchemaBytes bounds a JSON Schema registered over HTTP.
const MaxSchemaBytes = 1 << 20

// SchemaInfo describes one registered event type.
type SchemaInfo struct {
	Type     string          `json:"type"`
	Latest   int             `json:"latest"`
	InCode   bool            `json:"in_code"` // declared by the binary, not at run time
	Versions []SchemaVersion `json:"versions,omitempty"`
}

// SchemaVersion is one version of a SchemaInfo.
type SchemaVersion struct {
	Version int             `json:"version"`
	Schema  json.RawMessage `json:"schema"`
}

func (a *api) listSchemas(w http.ResponseWriter, r *http.Request) {
	if err := checkQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	out := struct {
		Types []SchemaInfo `json:"types"`
	}{Types: []SchemaInfo{}}
	for _, t := range a.reg.Types() {
		latest, _ := a.reg.Latest(t)
		out.Types = append(out.Types, SchemaInfo{Type: t, Latest: latest, InCode: a.reg.InCode(t)})
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) showSchema(w http.ResponseWriter, r *http.Request) {
	if err := checkQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	typ := r.PathValue("type")
	latest, ok := a.reg.Latest(typ)
	if !ok {
		a.fail(w, r, &apiError{kind: eventlog.ErrNotFound, msg: "event type " + typ + " is not registered"})
		return
	}
	info := SchemaInfo{Type: typ, Latest: latest, InCode: a.reg.InCode(typ)}
	for v := 1; v <= latest; v++ {
		s, _ := a.reg.Schema(typ, v)
		info.Versions = append(info.Versions, SchemaVersion{Version: v, Schema: s})
	}
	writeJSON(w, http.StatusOK, info)
}

// registerSchema registers the body, a JSON Schema, as the next version
// of the type: the first, or a compatible extension of the last.
func (a *api) registerSchema(w http.ResponseWriter, r *http.Request) {
	if err := checkQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxSchemaBytes))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if !json.Valid(body) {
		a.fail(w, r, invalidf("the body must be a JSON Schema document (JSON), like {\"type\":\"object\",\"properties\":{...}}"))
		return
	}
	typ := r.PathValue("type")
	v, err := a.reg.RegisterAtRuntime(r.Context(), a.k.schemaW, typ, body)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, struct {
		Type    string `json:"type"`
		Version int    `json:"version"`
	}{typ, v})
}
