package kernel

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
)

func (a *api) registerReactorRoutes() {
	a.mux.HandleFunc("GET /v1/reactors", a.listReactors)
	a.mux.HandleFunc("GET /v1/reactors/{name}", a.showReactor)
	a.mux.HandleFunc("POST /v1/reactors/{name}/retry", a.retryReactor)
}

// reactor returns the running reactor named in the path, or ErrNotFound.
func (a *api) reactor(r *http.Request) (*projections.ReactorHandle, error) {
	name := r.PathValue("name")
	for _, h := range a.k.Reactors() {
		if h.Name() == name {
			return h, nil
		}
	}
	return nil, &apiError{kind: eventlog.ErrNotFound, msg: fmt.Sprintf("no reactor %q", name)}
}

func (a *api) listReactors(w http.ResponseWriter, r *http.Request) {
	if err := checkQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	out := []projections.ReactorStatus{}
	for _, h := range a.k.Reactors() {
		st, err := h.Status(r.Context())
		if err != nil {
			a.fail(w, r, statusErr(err))
			return
		}
		out = append(out, st)
	}
	writeJSON(w, http.StatusOK, struct {
		Reactors []projections.ReactorStatus `json:"reactors"`
	}{out})
}

func (a *api) showReactor(w http.ResponseWriter, r *http.Request) {
	if err := checkQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	h, err := a.reactor(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.reactorStatus(w, r, h)
}

// retryReactor runs a parked event's side effect again: 200 with the
// reactor's status when it worked, 404 when nothing is parked at seq,
// 503 when it failed again (the event stays parked, with the new reason).
func (a *api) retryReactor(w http.ResponseWriter, r *http.Request) {
	if err := checkQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	seq, err := seqBody(w, r, "the sequence of the parked event")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	h, err := a.reactor(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := h.RetryParked(r.Context(), seq); err != nil {
		if !errors.Is(err, eventlog.ErrNotFound) {
			err = &apiError{kind: eventlog.ErrUnavailable, msg: err.Error()}
		}
		a.fail(w, r, err)
		return
	}
	a.reactorStatus(w, r, h)
}

// reactorStatus answers h's status.
func (a *api) reactorStatus(w http.ResponseWriter, r *http.Request, h *projections.ReactorHandle) {
	st, err := h.Status(r.Context())
	if err != nil {
		a.fail(w, r, statusErr(err))
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// statusErr: a reactor's status comes from JetStream, so failing to read
// it means the log is unavailable.
func statusErr(err error) error { return fmt.Errorf("%w: %v", eventlog.ErrUnavailable, err) }
