package main

import (
	"net/http"
	"slices"
	"testing"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/schemas"
	"github.com/fazt-sh/fazt/verticals/analytics"
)

// run serves and declares the verticals it is given, and only those:
// the binary's list is main's to pass, not a package global.
func TestRunServesTheVerticalsItIsGiven(t *testing.T) {
	hello := func(k *kernel.Kernel) error {
		return k.Handle("GET /v1/hello", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Write([]byte("hello"))
		}))
	}
	for _, tc := range []struct {
		name      string
		verticals []vertical
		hello     int // the status of GET /v1/hello
		sites     int // and of GET /v1/analytics/sites
	}{
		{"none", nil, http.StatusNotFound, http.StatusNotFound},
		{"a test vertical", []vertical{hello}, http.StatusOK, http.StatusNotFound},
		{"compiled in", compiledIn(), http.StatusNotFound, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServerWith(t, tc.verticals, t.TempDir())
			if status, body, _ := s.do(t, "GET", "/v1/hello", nil, nil); status != tc.hello {
				t.Errorf("GET /v1/hello: %d %s; want %d", status, body, tc.hello)
			}
			if status, body, _ := s.do(t, "GET", analytics.SitesPath, nil, nil); status != tc.sites {
				t.Errorf("GET %s: %d %s; want %d", analytics.SitesPath, status, body, tc.sites)
			}
		})
	}
}

// The catalog `fazt schema check` holds to the ledger is the given
// verticals' declarations.
func TestCatalogIsTheVerticalsGiven(t *testing.T) {
	for _, tc := range []struct {
		verticals []vertical
		want      bool // analytics' event type and tables in the catalog
	}{{nil, false}, {compiledIn(), true}} {
		cat, err := (&app{verticals: tc.verticals}).catalog()
		if err != nil {
			t.Fatal(err)
		}
		_, typed := cat.Events.Latest(analytics.TypePageviewRecorded)
		tabled := slices.ContainsFunc(cat.Tables, func(tb schemas.Table) bool { return tb.Name == analytics.Projection().Name+".pageviews" })
		if typed != tc.want || tabled != tc.want {
			t.Errorf("%d verticals: pageview type registered %v, pageviews table %v; want %v", len(tc.verticals), typed, tabled, tc.want)
		}
	}
}
