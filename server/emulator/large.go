package emulator

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// Large exports. A Keywords filter value EMULATOR_BYTES_<n> (n a decimal
// byte count, at most 64 GiB) makes the task's file a synthetic CSV of about
// n bytes instead of the data set's rows: the usual header, then
// fixed-width rows numbered from 1, as many as reach n (the size is rounded
// up to a whole row). The rows are generated while the file is sent, so
// even a file of many GiB costs no memory.

const (
	sizeKeywordPrefix = "EMULATOR_BYTES_"
	maxSyntheticBytes = 64 << 30
	// syntheticRowLen is the length of every synthetic row, newline included.
	syntheticRowLen = int64(len("000000000001,1,1,NotExpired,2030-01-01 00:00:00,cwp-000000000001,synthetic-000000000001,10.0.0.1,env:bench,2024-01-01 00:00:00,\n"))
)

var syntheticHeader = strings.Join(csvHeader, ",") + "\n"

// syntheticSize is the requested size of a synthetic file, or 0.
func (q *exportQuery) syntheticSize() int64 {
	for _, f := range q.Filters {
		if f.Name != "Keywords" {
			continue
		}
		for _, v := range f.Values {
			if s, ok := strings.CutPrefix(v, sizeKeywordPrefix); ok {
				if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 && n <= maxSyntheticBytes {
					return n
				}
			}
		}
	}
	return 0
}

// syntheticRows is the number of rows of a synthetic file of about n bytes.
func syntheticRows(n int64) int64 {
	body := n - int64(len(syntheticHeader))
	if body <= 0 {
		return 0
	}
	return (body + syntheticRowLen - 1) / syntheticRowLen
}

// syntheticLength is the exact size of the synthetic file for n.
func syntheticLength(n int64) int64 {
	return int64(len(syntheticHeader)) + syntheticRows(n)*syntheticRowLen
}

// writeSynthetic streams the synthetic file for n to w in 256 KiB writes.
func writeSynthetic(w io.Writer, n int64) error {
	buf := make([]byte, 0, 256<<10)
	buf = append(buf, syntheticHeader...)
	rows := syntheticRows(n)
	for i := int64(1); i <= rows; i++ {
		if int64(cap(buf)-len(buf)) < syntheticRowLen {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
		buf = appendPadded(buf, i)
		buf = append(buf, ",1,1,NotExpired,2030-01-01 00:00:00,cwp-"...)
		buf = appendPadded(buf, i)
		buf = append(buf, ",synthetic-"...)
		buf = appendPadded(buf, i)
		buf = append(buf, ",10.0.0.1,env:bench,2024-01-01 00:00:00,\n"...)
	}
	_, err := w.Write(buf)
	return err
}

// appendPadded appends i as 12 decimal digits.
func appendPadded(b []byte, i int64) []byte {
	var d [12]byte
	for k := len(d) - 1; k >= 0; k-- {
		d[k] = byte('0' + i%10)
		i /= 10
	}
	return append(b, d[:]...)
}

// fileInfo is the size and SHA-256 of a task's file, computed once by
// generating the file through a hash.
type fileInfo struct {
	once   sync.Once
	size   int64
	sha256 string
}

// FileInfo is the answer of GET /_emulator/tasks/{id}/file.
type FileInfo struct {
	TaskId int64
	Size   int64
	SHA256 string
}

// TaskFile returns the size and SHA-256 of a task's file, whatever its
// state; benchmarks compare downloads with it.
func (e *Emulator) TaskFile(id int64) (FileInfo, error) {
	e.tasks.mu.Lock()
	t, ok := e.tasks.byID[id]
	e.tasks.mu.Unlock()
	if !ok {
		return FileInfo{}, ErrTaskNotFound
	}
	t.info.once.Do(func() {
		h := sha256.New()
		cw := &countingWriter{}
		w := io.MultiWriter(h, cw)
		if t.synthetic > 0 {
			_ = writeSynthetic(w, t.synthetic)
		} else {
			_ = e.writeCSV(w, t.query)
		}
		t.info.size, t.info.sha256 = cw.n, hex.EncodeToString(h.Sum(nil))
	})
	return FileInfo{TaskId: id, Size: t.info.size, SHA256: t.info.sha256}, nil
}

func (e *Emulator) serveTaskFile(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, adminResult{Error: "task id must be a decimal integer"})
		return
	}
	info, err := e.TaskFile(id)
	if err != nil {
		writeJSON(w, http.StatusNotFound, adminResult{TaskId: id, Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, info)
}
