package schemas

import (
	"errors"
	"strings"
	"testing"
)

// tablePageviews is the v1 declaration the evolution tests start from.
func tablePageviews() Table {
	return Table{
		Name: "pageviews",
		Columns: []Column{
			{Name: "id", Type: "INTEGER", PrimaryKey: true},
			{Name: "app", Type: "TEXT", NotNull: true},
			{Name: "path", Type: "TEXT"},
			{Name: "hits", Type: "INTEGER", NotNull: true, Default: "0"},
		},
		Indexes: []Index{{Name: "pageviews_app", Columns: []string{"app"}}},
	}
}

// tableClone deep-copies t so a test can change it freely.
func tableClone(t Table) Table {
	c := Table{Name: t.Name, Columns: append([]Column(nil), t.Columns...)}
	for _, ix := range t.Indexes {
		ix.Columns = append([]string(nil), ix.Columns...)
		c.Indexes = append(c.Indexes, ix)
	}
	return c
}

func TestTableValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Table)
		want   string // "" = valid
	}{
		{"v1 as declared", func(*Table) {}, ""},
		{"NOT NULL without default is fine in a declaration", func(t *Table) {
			t.Columns = append(t.Columns, Column{Name: "must", Type: "TEXT", NotNull: true})
		}, ""},
		{"composite primary key", func(t *Table) { t.Columns[1].PrimaryKey = true }, ""},
		{"every type", func(t *Table) {
			t.Columns = append(t.Columns,
				Column{Name: "r", Type: "REAL", Default: "-1.5e3"},
				Column{Name: "b", Type: "BLOB", Default: "X'00ff'"},
				Column{Name: "n", Type: "NUMERIC", Default: "+1"},
				Column{Name: "s", Type: "TEXT", Default: "'it''s'"})
		}, ""},
		{"unique multi-column index", func(t *Table) {
			t.Indexes = append(t.Indexes, Index{Name: "pageviews_app_path", Columns: []string{"app", "path"}, Unique: true})
		}, ""},
		{"empty table name", func(t *Table) { t.Name = "" }, `table name "" is invalid`},
		{"upper-case table name", func(t *Table) { t.Name = "PageViews" }, `table name "PageViews" is invalid`},
		{"table name with a digit first", func(t *Table) { t.Name = "1views" }, "is invalid"},
		{"reserved sqlite_ prefix", func(t *Table) { t.Name = "sqlite_stat" }, "reserved by SQLite"},
		{"no columns", func(t *Table) { t.Columns = nil; t.Indexes = nil }, "declares no columns"},
		{"bad column name", func(t *Table) { t.Columns[2].Name = "the path" }, `column name "the path" is invalid`},
		{"duplicate column", func(t *Table) { t.Columns[2].Name = "app" }, "column app is declared twice"},
		{"unknown type", func(t *Table) { t.Columns[2].Type = "VARCHAR(20)" }, `unknown type "VARCHAR(20)"`},
		{"lower-case type", func(t *Table) { t.Columns[2].Type = "text" }, `unknown type "text"`},
		{"non-constant default", func(t *Table) { t.Columns[2].Default = "CURRENT_TIMESTAMP" }, "not a constant literal"},
		{"expression default", func(t *Table) { t.Columns[3].Default = "1+1" }, "not a constant literal"},
		{"NULL default", func(t *Table) { t.Columns[2].Default = "NULL" }, "not a constant literal"},
		{"unterminated string default", func(t *Table) { t.Columns[2].Default = "'x" }, "not a constant literal"},
		{"injection in default", func(t *Table) { t.Columns[2].Default = "''); DROP TABLE x; --" }, "not a constant literal"},
		{"bad index name", func(t *Table) { t.Indexes[0].Name = "by-app" }, `index name "by-app" is invalid`},
		{"duplicate index", func(t *Table) { t.Indexes = append(t.Indexes, t.Indexes[0]) }, "index name pageviews_app is already used"},
		{"index named like its table", func(t *Table) { t.Indexes[0].Name = "pageviews" }, "index name pageviews is already used"},
		{"index without columns", func(t *Table) { t.Indexes[0].Columns = nil }, "has no columns"},
		{"index on an undeclared column", func(t *Table) { t.Indexes[0].Columns = []string{"nope"} }, "column nope is not declared"},
		{"index column twice", func(t *Table) { t.Indexes[0].Columns = []string{"app", "app"} }, "column app is listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := tableClone(tablePageviews())
			tt.change(&tab)
			err := tab.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate: nil, want an error containing %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Validate: %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestCheckTableEvolution(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Table)
		// want lists substrings of the ErrEDDViolation; nil = allowed.
		want []string
	}{
		// Allowed.
		{"unchanged", func(*Table) {}, nil},
		{"nullable column appended", func(t *Table) {
			t.Columns = append(t.Columns, Column{Name: "referrer", Type: "TEXT"})
		}, nil},
		{"NOT NULL column with default appended", func(t *Table) {
			t.Columns = append(t.Columns, Column{Name: "bot", Type: "INTEGER", NotNull: true, Default: "0"})
		}, nil},
		{"index added", func(t *Table) {
			t.Indexes = append(t.Indexes, Index{Name: "pageviews_path", Columns: []string{"path"}})
		}, nil},
		{"column and index on it added", func(t *Table) {
			t.Columns = append(t.Columns, Column{Name: "country", Type: "TEXT", Default: "''"})
			t.Indexes = append(t.Indexes, Index{Name: "pageviews_country", Columns: []string{"country", "app"}, Unique: true})
		}, nil},

		// Refused.
		{"column dropped", func(t *Table) {
			t.Columns = append(t.Columns[:2], t.Columns[3])
		}, []string{"table pageviews: column path is missing (dropped or renamed)"}},
		{"column renamed", func(t *Table) { t.Columns[2].Name = "url" }, []string{
			"table pageviews: column path is missing (dropped or renamed)",
		}},
		{"type changed", func(t *Table) { t.Columns[2].Type = "BLOB" }, []string{
			"table pageviews: column path: type changed from TEXT to BLOB",
		}},
		{"NOT NULL added", func(t *Table) { t.Columns[2].NotNull = true }, []string{
			"table pageviews: column path: NOT NULL changed from false to true",
		}},
		{"NOT NULL removed", func(t *Table) { t.Columns[1].NotNull = false }, []string{
			"table pageviews: column app: NOT NULL changed from true to false",
		}},
		{"default changed", func(t *Table) { t.Columns[3].Default = "1" }, []string{
			"table pageviews: column hits: default changed from 0 to 1",
		}},
		{"default added", func(t *Table) { t.Columns[2].Default = "'/'" }, []string{
			"table pageviews: column path: default changed from none to '/'",
		}},
		{"default removed", func(t *Table) { t.Columns[3].Default = "" }, []string{
			"table pageviews: column hits: default changed from 0 to none",
		}},
		{"primary key extended", func(t *Table) { t.Columns[1].PrimaryKey = true }, []string{
			"table pageviews: column app: PRIMARY KEY changed from false to true",
		}},
		{"primary key removed", func(t *Table) { t.Columns[0].PrimaryKey = false }, []string{
			"table pageviews: column id: PRIMARY KEY changed from true to false",
		}},
		{"new NOT NULL column without default", func(t *Table) {
			t.Columns = append(t.Columns, Column{Name: "session", Type: "TEXT", NotNull: true})
		}, []string{"table pageviews: new column session is NOT NULL without a default"}},
		{"new primary key column", func(t *Table) {
			t.Columns = append(t.Columns, Column{Name: "day", Type: "TEXT", Default: "''", PrimaryKey: true})
		}, []string{"table pageviews: new column day is part of the primary key"}},
		{"new column inserted in the middle", func(t *Table) {
			t.Columns = append([]Column{t.Columns[0], {Name: "host", Type: "TEXT"}}, t.Columns[1:]...)
		}, []string{"table pageviews: column app moved"}},
		{"index removed", func(t *Table) { t.Indexes = nil }, []string{
			"table pageviews: index pageviews_app is missing (dropped or renamed)",
		}},
		{"index columns changed", func(t *Table) { t.Indexes[0].Columns = []string{"app", "path"} }, []string{
			"table pageviews: index pageviews_app changed from (app) to (app, path)",
		}},
		{"index made unique", func(t *Table) { t.Indexes[0].Unique = true }, []string{
			"table pageviews: index pageviews_app changed from (app) to UNIQUE (app)",
		}},
		{"table renamed", func(t *Table) { t.Name = "views" }, []string{
			"table pageviews: renamed to views",
		}},
		{"several changes are all reported", func(t *Table) {
			t.Columns[2].Type = "INTEGER"
			t.Columns = t.Columns[:3]
			t.Indexes = nil
		}, []string{
			"column hits is missing",
			"column path: type changed from TEXT to INTEGER",
			"index pageviews_app is missing",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := tablePageviews()
			next := tableClone(old)
			tt.change(&next)
			err := CheckTableEvolution(old, next)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("CheckTableEvolution: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrEDDViolation) {
				t.Fatalf("CheckTableEvolution: %v, want an ErrEDDViolation", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestCheckTableEvolutionInvalidDeclaration(t *testing.T) {
	next := tablePageviews()
	next.Columns = append(next.Columns, Column{Name: "bad", Type: "DATE"})
	err := CheckTableEvolution(tablePageviews(), next)
	if err == nil || errors.Is(err, ErrEDDViolation) {
		t.Fatalf("CheckTableEvolution = %v, want a plain declaration error", err)
	}
	if !strings.Contains(err.Error(), `unknown type "DATE"`) {
		t.Fatalf("error %q does not name the problem", err)
	}
}
