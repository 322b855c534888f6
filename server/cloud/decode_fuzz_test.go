package cloud_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"

	"github.com/cwpexport/cwpexport/server/cloud"
)

// cannedCloud is a loopback HTTP server answering every request with the
// status and body it is given.
type cannedCloud struct {
	mu     sync.Mutex
	status int
	body   []byte
}

func (c *cannedCloud) set(status int, body []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status, c.body = status, body
}

func (c *cannedCloud) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	status, body := c.status, c.body
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// FuzzDecodeCloudResponses sends both actions through the real SDK to a
// server answering arbitrary bodies: the client never panics, and either
// returns a *cloud.Error or a result that makes sense.
func FuzzDecodeCloudResponses(f *testing.F) {
	for _, s := range []string{
		`{"Response":{"TaskId":42,"RequestId":"r"}}`,
		`{"Response":{"Status":"FINISHED","DownloadUrl":"http://x/y.csv","RequestId":"r"}}`,
		`{"Response":{"Status":"PENDING","RequestId":"r"}}`,
		`{"Response":{"Status":"ERROR","RequestId":"r"}}`,
		`{"Response":{"Error":{"Code":"InternalError","Message":"boom"},"RequestId":"r"}}`,
		`{"Response":{"TaskId":-1}}`,
		`{"Response":{"Status":"FINISHED"}}`,
		`{"Response":`,
		`<html>502</html>`,
		``,
	} {
		f.Add(200, []byte(s))
	}
	f.Add(503, []byte(`{"Response":{"Error":{"Code":"ServiceUnavailable","Message":"x"}}}`))
	canned := &cannedCloud{}
	srv := httptest.NewServer(canned)
	f.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	c := cloud.New(cloud.Config{Credential: common.NewCredential("AKIDfuzz", "fuzz-key"), Endpoint: u.Host, Scheme: "HTTP", Timeout: 5 * time.Second})
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 200 || status > 599 {
			status = 200
		}
		canned.set(status, body)
		var ce *cloud.Error
		created, err := c.ExportLicenseDetail(context.Background(), cloud.ExportParams{})
		switch {
		case err != nil && !errors.As(err, &ce):
			t.Fatalf("ExportLicenseDetail: %T %v, want a *cloud.Error", err, err)
		case err == nil && created.TaskID <= 0:
			t.Fatalf("ExportLicenseDetail accepted task id %d", created.TaskID)
		}
		st, err := c.ExportTasks(context.Background(), 1)
		switch {
		case err != nil && !errors.As(err, &ce):
			t.Fatalf("ExportTasks: %T %v, want a *cloud.Error", err, err)
		case err != nil:
		case st.Status == cloud.StatusFinished && st.DownloadURL == "":
			t.Fatalf("FINISHED without a URL accepted")
		case st.Status != cloud.StatusPending && st.Status != cloud.StatusFinished && st.Status != cloud.StatusError:
			t.Fatalf("status %q accepted", st.Status)
		}
	})
}
