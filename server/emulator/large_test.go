package emulator

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"
)

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestSyntheticExportSizeHashAndCSV(t *testing.T) {
	s := startServer(t, Options{PendingFor: -1})
	c := sdkClient(s, testID, testKey)
	const want = 3 << 20
	id := createTask(t, c, map[string]any{"Filters": []map[string]any{{"Name": "Keywords", "Values": []string{sizeKeywordPrefix + strconv.Itoa(want)}}}})
	if err := s.FinishTask(id); err != nil {
		t.Fatal(err)
	}
	resp, body := get(t, pollTask(t, c, id).DownloadUrl)
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(body)) {
		t.Fatalf("HTTP %d, Content-Length %d, body %d bytes", resp.StatusCode, resp.ContentLength, len(body))
	}
	if n := len(body); n < want || n >= want+int(syntheticRowLen) {
		t.Fatalf("synthetic file is %d bytes, want %d rounded up to a row", n, want)
	}
	rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil || len(rows) < 2 || rows[len(rows)-1][0] != fmt.Sprintf("%012d", len(rows)-1) {
		t.Fatalf("not a CSV of numbered rows: %v (%d rows, last %v)", err, len(rows), rows[len(rows)-1])
	}
	sum := sha256.Sum256(body)
	info, err := s.TaskFile(id)
	if err != nil || info.Size != int64(len(body)) || info.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("TaskFile %+v (%v), downloaded %d bytes %x", info, err, len(body), sum)
	}
}

func TestDownloadURLsExpire(t *testing.T) {
	clock := newFakeClock()
	s := startServer(t, Options{PendingFor: -1, DownloadTTL: time.Minute, Now: clock.Now})
	c := sdkClient(s, testID, testKey)
	id := createTask(t, c, nil)
	if err := s.FinishTask(id); err != nil {
		t.Fatal(err)
	}
	url := pollTask(t, c, id).DownloadUrl
	if resp, _ := get(t, url); resp.StatusCode != http.StatusOK {
		t.Fatalf("fresh URL: HTTP %d", resp.StatusCode)
	}
	clock.Advance(2 * time.Minute)
	if resp, body := get(t, url); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("expired URL: HTTP %d %s", resp.StatusCode, body)
	}
	tampered := url[:len(url)-1] + "0"
	if tampered == url {
		tampered = url[:len(url)-1] + "1"
	}
	if resp, _ := get(t, tampered); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("tampered URL: HTTP %d", resp.StatusCode)
	}
	if resp, _ := get(t, pollTask(t, c, id).DownloadUrl); resp.StatusCode != http.StatusOK {
		t.Fatalf("refreshed URL: HTTP %d", resp.StatusCode)
	}
	if n := s.Stats().ExpiredDownloads; n != 2 {
		t.Fatalf("ExpiredDownloads = %d, want 2", n)
	}
}
