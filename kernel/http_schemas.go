package kernel

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/schemas"
)

// MaxSchemaBytes bounds a JSON Schema registered over HTTP: the
// registry's own limit (schemas.MaxSchemaBytes).
const MaxSchemaBytes = schemas.MaxSchemaBytes

func (a *api) registerSchemaRoutes() {
	a.handle("GET /v1/schemas", a.listSchemas)
	a.handle("GET /v1/schemas/{type}", a.showSchema)
	a.handle("POST /v1/schemas/{type}", a.registerSchema)
}

// SchemaInfo describes one registered event type.
type SchemaInfo struct {
	Type   string `json:"type"`
	Latest int    `json:"latest"`
	InCode bool   `json:"in_code"` // declared by the binary, not at run time
	// Status is "skipped" when records in the log that register the
	// type were skipped at start (listed in Skipped): the versions they
	// meant are not known. Empty when all is well.
	Status   string                        `json:"status,omitempty"`
	Versions []SchemaVersion               `json:"versions,omitempty"`
	Skipped  []schemas.SkippedRegistration `json:"skipped,omitempty"`
}

// SchemaVersion is one version of a SchemaInfo.
type SchemaVersion struct {
	Version int             `json:"version"`
	Schema  json.RawMessage `json:"schema"`
}

func (a *api) listSchemas(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	out := struct {
		Types []SchemaInfo `json:"types"`
		// Skipped lists every record of the log's schemas category that
		// was skipped at start, also those naming no type.
		Skipped []schemas.SkippedRegistration `json:"skipped,omitempty"`
	}{Types: []SchemaInfo{}, Skipped: a.reg.Skipped()}
	byType := skippedByType(out.Skipped)
	types := a.reg.Types()
	for t := range byType {
		if _, ok := a.reg.Latest(t); !ok {
			types = append(types, t) // only skipped records name it
		}
	}
	slices.Sort(types)
	for _, t := range types {
		out.Types = append(out.Types, a.schemaInfo(t, byType[t], false))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *api) showSchema(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	typ := r.PathValue("type")
	skipped := skippedByType(a.reg.Skipped())[typ]
	if _, ok := a.reg.Latest(typ); !ok && len(skipped) == 0 {
		return &apiError{kind: eventlog.ErrNotFound, msg: "event type " + typ + " is not registered"}
	}
	writeJSON(w, http.StatusOK, a.schemaInfo(typ, skipped, true))
	return nil
}

// schemaInfo describes typ, with every version's schema when versions.
func (a *api) schemaInfo(typ string, skipped []schemas.SkippedRegistration, versions bool) SchemaInfo {
	latest, _ := a.reg.Latest(typ)
	info := SchemaInfo{Type: typ, Latest: latest, InCode: a.reg.InCode(typ), Skipped: skipped}
	if len(skipped) > 0 {
		info.Status = "skipped"
	}
	for v := 1; versions && v <= latest; v++ {
		s, _ := a.reg.Schema(typ, v)
		info.Versions = append(info.Versions, SchemaVersion{Version: v, Schema: s})
	}
	return info
}

// skippedByType groups skipped records by the type their stream is for.
func skippedByType(all []schemas.SkippedRegistration) map[string][]schemas.SkippedRegistration {
	out := map[string][]schemas.SkippedRegistration{}
	for _, sk := range all {
		typ := strings.TrimPrefix(sk.Stream, schemas.Category+".")
		if eventlog.ValidateType(typ) == nil {
			out[typ] = append(out[typ], sk)
		}
	}
	return out
}

// registerSchema registers the body, a JSON Schema, as the next version
// of the type: the first, or a compatible extension of the last.
func (a *api) registerSchema(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxSchemaBytes))
	if err != nil {
		return err
	}
	if !json.Valid(body) {
		return invalidf("the body must be a JSON Schema document (JSON), like {\"type\":\"object\",\"properties\":{...}}")
	}
	typ := r.PathValue("type")
	v, err := a.reg.RegisterAtRuntime(r.Context(), a.k.schemaW, typ, body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, struct {
		Type    string `json:"type"`
		Version int    `json:"version"`
	}{typ, v})
	return nil
}
