package analytics

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
)

// Site is a site whose page views are counted.
type Site struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Domains []string `json:"domains"`
	// Created is when the log stored the site (RFC 3339); only listed.
	Created string `json:"created,omitempty"`
}

// CreateSiteRequest is the body of POST /v1/analytics/sites. An empty
// Name is the ID.
type CreateSiteRequest struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Domains []string `json:"domains"`
}

// CreateSiteResponse is the answer of POST /v1/analytics/sites: the site
// as stored (domains normalised) and the log sequence of its creation.
type CreateSiteResponse struct {
	Site Site   `json:"site"`
	Seq  uint64 `json:"seq"`
}

// ListSitesResponse is the answer of GET /v1/analytics/sites, the sites
// in id order.
type ListSitesResponse struct {
	Sites []Site `json:"sites"`
}

var siteIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidSiteID reports whether id is a site id: 1 to 63 lower-case
// letters, digits and '-', starting with a letter or digit.
func ValidSiteID(id string) bool { return siteIDRE.MatchString(id) }

func checkSiteID(id string) error {
	if !ValidSiteID(id) {
		return kernel.Invalidf("site id %q is invalid: use 1 to 63 lower-case letters, digits and '-', starting with a letter or digit", id)
	}
	return nil
}

// newSite checks and normalises a site to create: domains lower-cased,
// without a final dot, duplicates dropped; an empty name is the id.
func newSite(id, name string, domains []string) (Site, error) {
	if err := checkSiteID(id); err != nil {
		return Site{}, err
	}
	name = strings.TrimSpace(name)
	if name == "" {
		name = id
	}
	if len(name) > MaxNameBytes || !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) {
		return Site{}, kernel.Invalidf("name is invalid: use at most %d bytes of UTF-8 text without control characters", MaxNameBytes)
	}
	if len(domains) == 0 {
		return Site{}, kernel.Invalidf(`"domains" is missing or empty: list the hosts the site is served from, like ["blog.example.com"]`)
	}
	if len(domains) > MaxDomains {
		return Site{}, kernel.Invalidf("%d domains: a site has at most %d", len(domains), MaxDomains)
	}
	s := Site{ID: id, Name: name}
	for _, d := range domains {
		host, err := normalizeDomain(d)
		if err != nil {
			return Site{}, err
		}
		if !slices.Contains(s.Domains, host) {
			s.Domains = append(s.Domains, host)
		}
	}
	return s, nil
}

var hostLabelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// normalizeDomain returns d as a host name the collector compares page
// hosts with, or why it is not one.
func normalizeDomain(d string) (string, error) {
	host := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
	bad := func(why string) error {
		return kernel.Invalidf("domain %q is invalid: %s; give a host name like blog.example.com, without scheme, port or path", d, why)
	}
	switch {
	case host == "":
		return "", bad("it is empty")
	case len(host) > 253:
		return "", bad("it is longer than 253 bytes")
	case strings.ContainsAny(host, "/:?#@ "):
		return "", bad("it is not a bare host name")
	}
	for label := range strings.SplitSeq(host, ".") {
		if !hostLabelRE.MatchString(label) {
			return "", bad(fmt.Sprintf("label %q is not letters, digits and inner '-'", label))
		}
	}
	return host, nil
}

// siteCache keeps the sites the collector has seen, so that a page view
// costs no read. Sites never change once created (there is no event that
// would change one), so an entry never goes stale; a miss reads the log,
// the truth, which a site created a moment ago is already in.
type siteCache struct {
	mu sync.RWMutex
	m  map[string]Site
}

func newSiteCache() *siteCache { return &siteCache{m: map[string]Site{}} }

func (c *siteCache) get(id string) (Site, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s, ok := c.m[id]
	return s, ok
}

func (c *siteCache) put(s Site) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[s.ID] = s
}

// site returns the site id: from the cache, or else from the first event
// of its stream, which the create route makes its site_created event.
// Errors: kernel.NotFoundf for an unknown site, the log's own.
func (v *vertical) site(ctx context.Context, id string) (Site, error) {
	if s, ok := v.sites.get(id); ok {
		return s, nil
	}
	if err := checkSiteID(id); err != nil {
		return Site{}, err
	}
	events, err := v.k.ReadStream(ctx, SiteStream(id), 1, 1)
	if err != nil && !errors.Is(err, eventlog.ErrNotFound) {
		return Site{}, err
	}
	if len(events) == 0 || events[0].Type != TypeSiteCreated {
		return Site{}, kernel.NotFoundf("no site %q: create it with POST /v1/analytics/sites", id)
	}
	var d SiteCreated
	if err := json.Unmarshal(events[0].Data, &d); err != nil {
		return Site{}, fmt.Errorf("site %s: decode %s: %w", id, TypeSiteCreated, err)
	}
	s := Site{ID: id, Name: d.Name, Domains: d.Domains}
	v.sites.put(s)
	return s, nil
}

// createSite is POST /v1/analytics/sites.
func (v *vertical) createSite(w http.ResponseWriter, r *http.Request) {
	if _, err := kernel.CheckQuery(r); err != nil {
		v.k.WriteError(w, r, err)
		return
	}
	var req CreateSiteRequest
	if err := kernel.DecodeJSON(w, r, &req); err != nil {
		v.k.WriteError(w, r, err)
		return
	}
	s, err := newSite(req.ID, req.Name, req.Domains)
	if err != nil {
		v.k.WriteError(w, r, err)
		return
	}
	// A site's stream holds all its page views: refuse a known id before
	// Decide would fold them all.
	if _, err := v.site(r.Context(), s.ID); err == nil {
		v.k.WriteError(w, r, kernel.Refusef("site %q already exists", s.ID))
		return
	} else if !errors.Is(err, eventlog.ErrNotFound) {
		v.k.WriteError(w, r, err)
		return
	}
	data, err := json.Marshal(SiteCreated{Site: s.ID, Name: s.Name, Domains: s.Domains})
	if err != nil {
		v.k.WriteError(w, r, err)
		return
	}
	dec, err := kernel.Decide(r.Context(), v.k, SiteStream(s.ID), kernel.Decider[bool]{
		// The state is whether the stream has any event: a site is only
		// created on a new stream, so its first event is its creation.
		Evolve: func(_ bool, _ eventlog.Event) (bool, error) { return true, nil },
		Decide: func(exists bool, _ uint64) ([]eventlog.Event, error) {
			if exists {
				return nil, kernel.Refusef("site %q already exists", s.ID)
			}
			return []eventlog.Event{{Type: TypeSiteCreated, Data: data}}, nil
		},
	})
	if err != nil {
		v.k.WriteError(w, r, err)
		return
	}
	v.sites.put(s)
	kernel.WriteJSON(w, http.StatusCreated, CreateSiteResponse{s, dec.Result.LastSeq})
}

// listSites is GET /v1/analytics/sites.
func (v *vertical) listSites(w http.ResponseWriter, r *http.Request) {
	if _, err := kernel.CheckQuery(r); err != nil {
		v.k.WriteError(w, r, err)
		return
	}
	sites := []Site{}
	_, err := v.read(r.Context(), func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT id, name, domains, created FROM sites ORDER BY id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var s Site
			var domains string
			if err := rows.Scan(&s.ID, &s.Name, &domains, &s.Created); err != nil {
				return err
			}
			if err := json.Unmarshal([]byte(domains), &s.Domains); err != nil {
				return fmt.Errorf("site %s: domains: %w", s.ID, err)
			}
			sites = append(sites, s)
		}
		return rows.Err()
	})
	if err != nil {
		v.k.WriteError(w, r, err)
		return
	}
	kernel.WriteJSON(w, http.StatusOK, ListSitesResponse{sites})
}
