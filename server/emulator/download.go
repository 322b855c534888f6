package emulator

import (
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// csvHeader lists the export columns, modelled on CWP license details.
var csvHeader = []string{
	"LicenseId", "LicenseType", "LicenseStatus", "DeadlineStatus", "Deadline",
	"ResourceId", "MachineName", "MachineIp", "Tags", "BindTime", "UnbindTime",
}

const csvTimeLayout = time.DateTime

// serveDownload serves a finished task's CSV like a pre-signed object URL:
// no signature, 404 for unknown tokens.
func (e *Emulator) serveDownload(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutSuffix(r.PathValue("file"), ".csv")
	var t *task
	if ok {
		t = e.tasks.downloadable(token, e.now(), e.pendingFor)
	}
	if t == nil {
		http.NotFound(w, r)
		return
	}
	if e.refuseExpired(w, r, token) {
		return
	}
	// Content-Length needs the size up front; a counting pass keeps memory
	// flat instead of buffering the file.
	t.sizeOnce.Do(func() {
		if t.synthetic > 0 {
			t.size = syntheticLength(t.synthetic)
			return
		}
		cw := &countingWriter{}
		_ = e.writeCSV(cw, t.query) // countingWriter never fails
		t.size = cw.n
	})
	h := w.Header()
	h.Set("Content-Type", "text/csv")
	h.Set("Content-Length", strconv.FormatInt(t.size, 10))
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="cwp-license-detail-%d.csv"`, t.id))
	e.stats.downloaded()
	if r.Method == http.MethodHead {
		return
	}
	// A large export may outlast the server's WriteTimeout.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	write := func(w io.Writer) error { return e.writeCSV(w, t.query) }
	if t.synthetic > 0 {
		write = func(w io.Writer) error { return writeSynthetic(w, t.synthetic) }
	}
	if err := write(w); err != nil {
		e.log.Debug("download aborted", "task", t.id, "err", err)
	}
}

// writeCSV streams the rows matching q to w.
func (e *Emulator) writeCSV(w io.Writer, q *exportQuery) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	row := make([]string, len(csvHeader))
	var werr error
	e.data.each(q, func(r record) bool {
		row[0] = strconv.FormatInt(r.LicenseID, 10)
		row[1] = strconv.Itoa(r.LicenseType)
		row[2] = strconv.Itoa(r.LicenseStatus)
		row[3] = r.DeadlineStatus
		row[4] = formatTime(r.Deadline)
		row[5] = r.ResourceID
		row[6] = r.MachineName
		row[7] = r.MachineIP
		row[8] = formatTags(r.Tags)
		row[9] = formatTime(r.BindTime)
		row[10] = formatTime(r.UnbindTime)
		werr = cw.Write(row)
		return werr == nil
	})
	if werr != nil {
		return werr
	}
	cw.Flush()
	return cw.Error()
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(csvTimeLayout)
}

func formatTags(tags []tag) string {
	parts := make([]string, len(tags))
	for i, t := range tags {
		parts[i] = t.Key + ":" + t.Value
	}
	return strings.Join(parts, ";")
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}
