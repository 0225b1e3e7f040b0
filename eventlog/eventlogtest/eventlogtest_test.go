package eventlogtest_test

import (
	"context"
	"errors"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/eventlog/eventlogtest"
)

// Open gives an open log, tuned before it opened, and closes it when the
// test that opened it ends.
func TestOpenClosesAtCleanup(t *testing.T) {
	var l *eventlog.Log
	t.Run("open", func(t *testing.T) {
		l = eventlogtest.Open(t, func(l *eventlog.Log) { l.Durability = eventlog.Relaxed })
		if l.Durability != eventlog.Relaxed {
			t.Fatalf("durability %v: the tuning was not applied", l.Durability)
		}
		res, err := l.Append(context.Background(), []eventlog.Event{{Stream: "t.1", Type: "t.x"}})
		if err != nil || res.LastSeq != 1 {
			t.Fatalf("append to an open log: %+v %v", res, err)
		}
	})
	if _, err := l.Append(context.Background(), []eventlog.Event{{Stream: "t.1", Type: "t.x"}}); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("append after the test ended: %v; want ErrClosed", err)
	}
}

// OpenDir reopens what a test closed: the same log, in the same place.
func TestOpenDirReopens(t *testing.T) {
	dir := t.TempDir()
	l := eventlogtest.OpenDir(t, dir)
	if _, err := l.Append(context.Background(), []eventlog.Event{{Stream: "t.1", Type: "t.x"}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	l = eventlogtest.OpenDir(t, dir)
	if seq, err := l.LastSeq(context.Background()); err != nil || seq != 1 {
		t.Fatalf("reopened log at %d, %v; want 1", seq, err)
	}
}

// Only tests import the module's test helper packages (this one,
// kerneltest: those named like httptest): they import testing, which
// has no place in the binary.
func TestImportedByTestsOnly(t *testing.T) {
	const module = "github.com/fazt-sh/fazt/"
	isHelper := func(dir string) bool { return strings.HasSuffix(filepath.Base(dir), "test") }
	root := filepath.Join("..", "..") // the module root
	fset := token.NewFileSet()
	read := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || isHelper(filepath.Dir(path)) {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		read++
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); strings.HasPrefix(p, module) && isHelper(p) {
				t.Errorf("%s imports %s; only tests may", path, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if read < 20 {
		t.Fatalf("read %d Go files under %s; want the whole module", read, root)
	}
}
