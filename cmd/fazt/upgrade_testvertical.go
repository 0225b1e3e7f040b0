//go:build fazt_upgradetest

package main

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
)

// upgradeTestRelease is set at link time and picks the release of the
// notes vertical: "" the first, "2" the second, "2-halting" the second
// with a bug. The upgrade tests use it to show EDD at work across
// binaries: release 2 adds an optional field to the event (schema
// version 2) and a nullable column to its table (projection version 2);
// release 1 runs on what release 2 wrote, reading the fields it knows
// (schemas.Decode), and release 2 reads the notes release 1 wrote, with
// no priority. The bug of "2-halting": its fold requires the new field,
// so it halts on a note release 1 wrote, and never becomes ready on such
// data.
var upgradeTestRelease string

func init() { tagged = append(tagged, registerNotes) }

const (
	noteAdded = "notes.added"
	noteV1    = `{"type":"object","properties":{"id":{"type":"string"},"text":{"type":"string"}},"required":["id","text"]}`
	noteV2    = `{"type":"object","properties":{"id":{"type":"string"},"text":{"type":"string"},"priority":{"type":"integer"}},"required":["id","text"]}`
)

func registerNotes(k *kernel.Kernel) error {
	release, halting := 1, false
	switch upgradeTestRelease {
	case "2":
		release = 2
	case "2-halting":
		release, halting = 2, true
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
	reg := k.Schemas()
	return k.RegisterProjection(projections.Projection{
		Name:     "notes",
		Version:  release,
		Critical: true,
		Tables:   []schemas.Table{{Name: "notes", Columns: cols}},
		Filter:   eventlog.Filter{Categories: []string{"notes"}, Types: []string{noteAdded}},
		Apply: func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
			if release == 1 {
				var n struct { // what release 1 knows
					ID   string `json:"id"`
					Text string `json:"text"`
				}
				if err := schemas.Decode(reg, e, &n); err != nil {
					return err
				}
				_, err := projections.Exec(ctx, tx, `INSERT OR REPLACE INTO notes (id, text) VALUES (?, ?)`, n.ID, n.Text)
				return err
			}
			var n struct {
				ID       string `json:"id"`
				Text     string `json:"text"`
				Priority *int   `json:"priority"`
			}
			if err := schemas.Decode(reg, e, &n); err != nil {
				return err
			}
			if halting && n.Priority == nil { // the bug: old notes have none
				return fmt.Errorf("note %s has no priority", n.ID)
			}
			_, err := projections.Exec(ctx, tx, `INSERT OR REPLACE INTO notes (id, text, priority) VALUES (?, ?, ?)`, n.ID, n.Text, n.Priority)
			return err
		},
	})
}
