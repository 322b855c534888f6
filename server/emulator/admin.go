package emulator

import (
	"errors"
	"net/http"
	"strconv"
)

// serveStats answers GET /_emulator/stats with the JSON encoding of Stats.
func (e *Emulator) serveStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, e.Stats())
}

func (e *Emulator) serveFinishTask(w http.ResponseWriter, r *http.Request) {
	e.serveEndTask(w, r, e.FinishTask, statusFinished)
}

func (e *Emulator) serveFailTask(w http.ResponseWriter, r *http.Request) {
	e.serveEndTask(w, r, e.FailTask, statusError)
}

// adminResult is the body of the task admin endpoints.
type adminResult struct {
	TaskId int64  `json:",omitempty"`
	Status string `json:",omitempty"`
	Error  string `json:",omitempty"`
}

func (e *Emulator) serveEndTask(w http.ResponseWriter, r *http.Request, end func(int64) error, status string) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, adminResult{Error: "task id must be a decimal integer"})
		return
	}
	switch err := end(id); {
	case errors.Is(err, ErrTaskNotFound):
		writeJSON(w, http.StatusNotFound, adminResult{TaskId: id, Error: err.Error()})
	case errors.Is(err, ErrTaskNotPending):
		writeJSON(w, http.StatusConflict, adminResult{TaskId: id, Error: err.Error()})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, adminResult{TaskId: id, Error: err.Error()})
	default:
		e.log.Info("task ended by admin request", "task", id, "status", status)
		writeJSON(w, http.StatusOK, adminResult{TaskId: id, Status: status})
	}
}
