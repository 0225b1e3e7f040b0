//go:build fazt_upgradetest

package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
)

// upgradeTestRelease is set at link time: "2" builds the newer release
// of the notes vertical, anything else the first. The upgrade tests use
// it to show EDD at work across binaries: release 2 adds an optional
// field to the event (schema version 2) and a nullable column to its
// table (projection version 2); release 1 runs on what release 2 wrote.
// Release 2 also has a real bug: its fold requires the new field, so it
// halts on a note release 1 wrote, and never becomes ready on such data.
var upgradeTestRelease string

func init() { tagged = append(tagged, registerNotes) }

const (
	noteAdded = "notes.added"
	noteV1    = `{"type":"object","properties":{"id":{"type":"string"},"text":{"type":"string"}},"required":["id","text"]}`
	noteV2    = `{"type":"object","properties":{"id":{"type":"string"},"text":{"type":"string"},"priority":{"type":"integer"}},"required":["id","text"]}`
)

func registerNotes(k *kernel.Kernel) error {
	release := 1
	if upgradeTestRelease == "2" {
		release = 2
	}
	if err := k.RegisterEvent(noteAdded, 1, []byte(noteV1)); err != nil {
		return err
	}
	cols := []schemas.Column{{Name: "id", Type: "TEXT", PrimaryKey: true}, {Name: "text", Type: "TEXT", NotNull: true}}
	if release == 2 {
		if err := k.RegisterEvent(noteAdded, 2, []byte(noteV2)); err != nil {
			return err
		}
		cols = append(cols, schemas.Column{Name: "priority", Type: "INTEGER"})
	}
	return k.RegisterProjection(projections.Projection{
		Name:     "notes",
		Version:  release,
		Critical: true,
		Tables:   []schemas.Table{{Name: "notes", Columns: cols}},
		Filter:   eventlog.Filter{Categories: []string{"notes"}, Types: []string{noteAdded}},
		Apply: func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
			var n struct {
				ID       string `json:"id"`
				Text     string `json:"text"`
				Priority *int   `json:"priority"`
			}
			if err := json.Unmarshal(e.Data, &n); err != nil {
				return err
			}
			if release == 1 {
				_, err := projections.Exec(ctx, tx, `INSERT OR REPLACE INTO notes (id, text) VALUES (?, ?)`, n.ID, n.Text)
				return err
			}
			if n.Priority == nil { // the bug: old notes have none
				return fmt.Errorf("note %s has no priority", n.ID)
			}
			_, err := projections.Exec(ctx, tx, `INSERT OR REPLACE INTO notes (id, text, priority) VALUES (?, ?, ?)`, n.ID, n.Text, *n.Priority)
			return err
		},
	})
}
