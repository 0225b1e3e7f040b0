package projections_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/fazt-sh/fazt/projections"
)

// TestRunnerLoggerDefault: a runner logs to slog.Default() unless told
// otherwise, and Open takes a nil Logger for it too, as the log does.
func TestRunnerLoggerDefault(t *testing.T) {
	l := openLog(t)
	r := projections.New(t.TempDir(), l)
	if r.Logger != slog.Default() {
		t.Fatalf("New: Logger %v, want slog.Default()", r.Logger)
	}
	r.Logger = nil
	if err := r.Open(context.Background()); err != nil {
		t.Fatalf("Open with a nil Logger: %v", err)
	}
	defer closeRunner(t, r)
	if r.Logger != slog.Default() {
		t.Fatalf("Open with a nil Logger: %v, want slog.Default()", r.Logger)
	}
}
