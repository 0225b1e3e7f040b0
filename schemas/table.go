package schemas

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Table declares a read-model table in Go. A declaration is the whole
// truth a binary knows about its table: the migrator creates what is
// missing from it, and code reads and writes only the columns it lists,
// so an older binary keeps working on a database a newer one extended.
//
// Evolve a declaration only by appending nullable or defaulted columns
// and adding indexes; [CheckTableEvolution] says whether a change is
// allowed.
//
// The JSON form is what the schema ledger records; keep the tags stable.
type Table struct {
	Name    string   `json:"name"`
	Columns []Column `json:"columns"`
	Indexes []Index  `json:"indexes,omitempty"`
}

// Column declares one column.
type Column struct {
	Name string `json:"name"`
	// Type is INTEGER, TEXT, REAL, BLOB or NUMERIC.
	Type    string `json:"type"`
	NotNull bool   `json:"not_null,omitempty"`
	// Default is a constant SQL literal (42, -1.5, 'text', X'00ff');
	// "" means no default. Constants only: a rebuilt read model must
	// equal the original, so CURRENT_TIMESTAMP and friends are refused.
	Default string `json:"default,omitempty"`
	// PrimaryKey columns form the table's primary key, in declaration
	// order. They exist from the table's first version.
	PrimaryKey bool `json:"primary_key,omitempty"`
}

// Index declares one index on columns of its table.
type Index struct {
	Name    string   `json:"name"`
	Columns []string `json:"columns"`
	Unique  bool     `json:"unique,omitempty"`
}

// tableColumnTypes are the column types a declaration may use.
var tableColumnTypes = []string{"INTEGER", "TEXT", "REAL", "BLOB", "NUMERIC"}

var (
	tableIdentRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
	// Constant literals whose text SQLite reports back verbatim in
	// PRAGMA table_info, so a live default compares equal to its
	// declaration.
	tableDefaultREs = []*regexp.Regexp{
		regexp.MustCompile(`^[-+]?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$`),
		regexp.MustCompile(`^'([^']|'')*'$`),
		regexp.MustCompile(`^[xX]'([0-9a-fA-F]{2})*'$`),
	}
)

// Validate reports whether t is a well-formed declaration: lower-case
// identifiers ([a-z_][a-z0-9_]*, not starting with sqlite_), no
// duplicate names, known types, constant defaults, at least one column,
// and indexes over declared columns. A NOT NULL column without a default
// is fine here; the migrator only accepts it when it creates the table.
func (t Table) Validate() error {
	if err := tableCheckIdent("table", t.Name); err != nil {
		return err
	}
	if len(t.Columns) == 0 {
		return fmt.Errorf("table %s: declares no columns", t.Name)
	}
	cols := make(map[string]bool, len(t.Columns))
	for _, c := range t.Columns {
		if err := tableCheckIdent("table "+t.Name+": column", c.Name); err != nil {
			return err
		}
		if cols[c.Name] {
			return fmt.Errorf("table %s: column %s is declared twice", t.Name, c.Name)
		}
		cols[c.Name] = true
		if !tableKnownType(c.Type) {
			return fmt.Errorf("table %s: column %s: unknown type %q (use one of %s)",
				t.Name, c.Name, c.Type, strings.Join(tableColumnTypes, ", "))
		}
		if c.Default != "" && !tableConstantDefault(c.Default) {
			return fmt.Errorf("table %s: column %s: default %q is not a constant literal (use a number, 'text' or X'hex'; leave it empty for none)",
				t.Name, c.Name, c.Default)
		}
	}
	idx := make(map[string]bool, len(t.Indexes))
	for _, ix := range t.Indexes {
		if err := tableCheckIdent("table "+t.Name+": index", ix.Name); err != nil {
			return err
		}
		if idx[ix.Name] || ix.Name == t.Name {
			return fmt.Errorf("table %s: index name %s is already used", t.Name, ix.Name)
		}
		idx[ix.Name] = true
		if len(ix.Columns) == 0 {
			return fmt.Errorf("table %s: index %s has no columns", t.Name, ix.Name)
		}
		seen := make(map[string]bool, len(ix.Columns))
		for _, c := range ix.Columns {
			if !cols[c] {
				return fmt.Errorf("table %s: index %s: column %s is not declared", t.Name, ix.Name, c)
			}
			if seen[c] {
				return fmt.Errorf("table %s: index %s: column %s is listed twice", t.Name, ix.Name, c)
			}
			seen[c] = true
		}
	}
	return nil
}

// Column returns the declared column called name.
func (t Table) Column(name string) (Column, bool) {
	for _, c := range t.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

// Index returns the declared index called name.
func (t Table) Index(name string) (Index, bool) {
	for _, ix := range t.Indexes {
		if ix.Name == name {
			return ix, true
		}
	}
	return Index{}, false
}

// CheckTableEvolution reports whether new may replace old without
// shrinking or rewriting storage. Allowed: every old column kept with an
// identical definition and in the same order, new columns appended that
// are nullable or have a default and are not part of the primary key,
// new indexes. Anything else is an ErrEDDViolation naming the table, the
// column or index, and the change; all violations are reported at once.
// A malformed new declaration is reported as a plain error.
//
// A new UNIQUE index is allowed, but creating it fails if existing rows
// hold duplicates.
func CheckTableEvolution(old, new Table) error {
	if err := new.Validate(); err != nil {
		return err
	}
	if old.Name != new.Name {
		return violation("table %s: renamed to %s; tables cannot be renamed, declare a new table instead", old.Name, new.Name)
	}
	var errs []error
	kept := 0 // old columns found so far; they must lead new.Columns in order
	for _, oc := range old.Columns {
		nc, ok := new.Column(oc.Name)
		if !ok {
			errs = append(errs, violation("table %s: column %s is missing (dropped or renamed); columns can only be added", old.Name, oc.Name))
			continue
		}
		if kept < len(new.Columns) && new.Columns[kept].Name != oc.Name {
			errs = append(errs, violation("table %s: column %s moved; keep existing columns in order and append new ones at the end", old.Name, oc.Name))
		}
		kept++
		errs = append(errs, tableColumnChanges(old.Name, oc, nc)...)
	}
	for _, nc := range new.Columns {
		if _, ok := old.Column(nc.Name); ok {
			continue
		}
		if nc.PrimaryKey {
			errs = append(errs, violation("table %s: new column %s is part of the primary key; primary key columns cannot be added later", new.Name, nc.Name))
		}
		if nc.NotNull && nc.Default == "" {
			errs = append(errs, violation("table %s: new column %s is NOT NULL without a default; existing rows cannot meet it, make it nullable or give it a default", new.Name, nc.Name))
		}
	}
	for _, oi := range old.Indexes {
		ni, ok := new.Index(oi.Name)
		if !ok {
			errs = append(errs, violation("table %s: index %s is missing (dropped or renamed); indexes can only be added", old.Name, oi.Name))
			continue
		}
		if ni.Unique != oi.Unique || !slices.Equal(ni.Columns, oi.Columns) {
			errs = append(errs, violation("table %s: index %s changed from %s to %s; indexes cannot change, add a new index instead",
				old.Name, oi.Name, tableDescribeIndex(oi), tableDescribeIndex(ni)))
		}
	}
	return errors.Join(errs...)
}

// tableColumnChanges lists the ways a kept column's definition differs.
func tableColumnChanges(table string, o, n Column) []error {
	var errs []error
	if !strings.EqualFold(o.Type, n.Type) {
		errs = append(errs, violation("table %s: column %s: type changed from %s to %s; add a new column instead", table, o.Name, o.Type, n.Type))
	}
	if o.NotNull != n.NotNull {
		errs = append(errs, violation("table %s: column %s: NOT NULL changed from %t to %t; add a new column instead", table, o.Name, o.NotNull, n.NotNull))
	}
	if o.Default != n.Default {
		errs = append(errs, violation("table %s: column %s: default changed from %s to %s; add a new column instead", table, o.Name, tableShowDefault(o.Default), tableShowDefault(n.Default)))
	}
	if o.PrimaryKey != n.PrimaryKey {
		errs = append(errs, violation("table %s: column %s: PRIMARY KEY changed from %t to %t; the primary key is fixed at creation", table, o.Name, o.PrimaryKey, n.PrimaryKey))
	}
	return errs
}

func tableCheckIdent(what, name string) error {
	if !tableIdentRE.MatchString(name) {
		return fmt.Errorf("%s name %q is invalid: use [a-z_][a-z0-9_]*", what, name)
	}
	if strings.HasPrefix(name, "sqlite_") {
		return fmt.Errorf("%s name %q is invalid: the sqlite_ prefix is reserved by SQLite", what, name)
	}
	return nil
}

func tableKnownType(t string) bool { return slices.Contains(tableColumnTypes, t) }

func tableConstantDefault(d string) bool {
	for _, re := range tableDefaultREs {
		if re.MatchString(d) {
			return true
		}
	}
	return false
}

func tableShowDefault(d string) string {
	if d == "" {
		return "none"
	}
	return d
}

func tableDescribeIndex(ix Index) string {
	s := "(" + strings.Join(ix.Columns, ", ") + ")"
	if ix.Unique {
		return "UNIQUE " + s
	}
	return s
}
