package kernel

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel/reactor"
)

func (a *api) registerReactorRoutes() {
	a.handle("GET /v1/reactors", a.listReactors)
	a.handle("GET /v1/reactors/{name}", a.showReactor)
	a.handle("POST /v1/reactors/{name}/retry", a.retryReactor)
}

// reactor returns the running reactor named in the path, or ErrNotFound.
func (a *api) reactor(r *http.Request) (*reactor.Runner, error) {
	name := r.PathValue("name")
	for _, h := range a.k.Reactors() {
		if h.Name() == name {
			return h, nil
		}
	}
	return nil, &apiError{kind: eventlog.ErrNotFound, msg: fmt.Sprintf("no reactor %q", name)}
}

func (a *api) listReactors(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	out := []reactor.Status{}
	for _, h := range a.k.Reactors() {
		st, err := h.Status(r.Context())
		if err != nil {
			return statusErr(err)
		}
		out = append(out, st)
	}
	writeJSON(w, http.StatusOK, struct {
		Reactors []reactor.Status `json:"reactors"`
	}{out})
	return nil
}

func (a *api) showReactor(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	h, err := a.reactor(r)
	if err != nil {
		return err
	}
	return a.reactorStatus(w, r, h)
}

// retryReactor runs a parked event's side effect again: 200 with the
// reactor's status when it worked, 404 when nothing is parked at seq,
// 503 when it failed again (the event stays parked, with the new reason).
func (a *api) retryReactor(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r); err != nil {
		return err
	}
	seq, err := seqBody(w, r, "the sequence of the parked event")
	if err != nil {
		return err
	}
	h, err := a.reactor(r)
	if err != nil {
		return err
	}
	if err := h.RetryParked(r.Context(), seq); err != nil {
		if !errors.Is(err, eventlog.ErrNotFound) {
			err = &apiError{kind: eventlog.ErrUnavailable, msg: err.Error()}
		}
		return err
	}
	return a.reactorStatus(w, r, h)
}

// reactorStatus answers h's status, or returns why it cannot be read.
func (a *api) reactorStatus(w http.ResponseWriter, r *http.Request, h *reactor.Runner) error {
	st, err := h.Status(r.Context())
	if err != nil {
		return statusErr(err)
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// statusErr: a reactor's status comes from JetStream, so failing to read
// it means the log is unavailable (503), whatever the cause's kind: %v.
func statusErr(err error) error { return fmt.Errorf("%w: %v", eventlog.ErrUnavailable, err) }
