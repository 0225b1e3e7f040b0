package kernel_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestLogErrorKey: every log call of the module puts its error under the
// one key "err" (see the package doc), so that one query finds them all.
// It reads the source: a key is a string literal at a key position of a
// slog-style call (message, then key and value pairs).
func TestLogErrorKey(t *testing.T) {
	// The first argument of the pairs, by method name.
	pairsFrom := map[string]int{
		"Debug": 1, "Info": 1, "Warn": 1, "Error": 1,
		"DebugContext": 2, "InfoContext": 2, "WarnContext": 2, "ErrorContext": 2,
		"Log": 3, "With": 0,
	}
	root := filepath.Join("..")
	fset := token.NewFileSet()
	calls := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		// Package functions of the same names (http.Error) are not logs.
		pkgs := map[string]bool{}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			name := p[strings.LastIndex(p, "/")+1:]
			if imp.Name != nil {
				name = imp.Name.Name
			}
			pkgs[name] = p != "log/slog"
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); ok && pkgs[id.Name] {
				return true
			}
			from, ok := pairsFrom[sel.Sel.Name]
			if !ok || len(call.Args) <= from {
				return true
			}
			logged := false
			for i := from; i < len(call.Args); {
				lit, ok := call.Args[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					i++ // an slog.Attr, or not a log call at all
					continue
				}
				logged = true
				if key, _ := strconv.Unquote(lit.Value); key == "error" {
					t.Errorf("%s: the log key %q: use \"err\" for errors", fset.Position(lit.Pos()), key)
				}
				i += 2
			}
			if logged {
				calls++
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls < 20 {
		t.Fatalf("found %d log calls with keys in the module's source; is the root %s right?", calls, root)
	}
}
