package emulator

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	tcerr "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"
	tchttp "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/http"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"
)

const (
	testID    = "AKIDtestsecretid0000000000000000"
	testKey   = "testsecretkey0000000000000000000"
	otherID   = "AKIDothersecretid000000000000000"
	otherKey  = "othersecretkey000000000000000000"
	unknownID = "AKIDunknown000000000000000000000"
)

// fakeClock is a settable emulator clock. It starts at the real time so the
// SDK's time.Now timestamps are within the 5-minute signature window.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// server is a running emulator on a real loopback listener.
type server struct {
	*Emulator
	addr string // host:port
}

func (s *server) url(path string) string { return "http://" + s.addr + path }

// startServer runs an emulator through Serve and checks that it shuts down
// cleanly when the test ends.
func startServer(t *testing.T, opts Options) *server {
	t.Helper()
	s, stop := serve(t, opts)
	t.Cleanup(stop)
	return s
}

// serve runs an emulator through Serve; stop (idempotent) shuts it down,
// checks that Serve returned cleanly, and closes the emulator.
func serve(t *testing.T, opts Options) (s *server, stop func()) {
	t.Helper()
	if opts.Credentials == nil {
		opts.Credentials = map[string]string{testID: testKey, otherID: otherKey}
	}
	e, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Serve(ctx, lis) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve returned %v after shutdown", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Serve did not return after cancel")
			}
			if err := e.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	return &server{Emulator: e, addr: lis.Addr().String()}, stop
}

// sdkClient is the official SDK pointed at the emulator: the test oracle.
func sdkClient(s *server, id, key string) *common.Client {
	prof := profile.NewClientProfile()
	prof.HttpProfile.Endpoint = s.addr
	prof.HttpProfile.Scheme = "HTTP"
	prof.HttpProfile.ReqTimeout = 10
	return common.NewCommonClient(common.NewCredential(id, key), "", prof)
}

// sdkCall sends action with params through the SDK and decodes the
// Response object into out (may be nil).
func sdkCall(t *testing.T, c *common.Client, version, action string, params map[string]any, out any) error {
	t.Helper()
	req := tchttp.NewCommonRequest("cwp", version, action)
	if params == nil {
		params = map[string]any{}
	}
	if err := req.SetActionParameters(params); err != nil {
		t.Fatalf("SetActionParameters: %v", err)
	}
	resp := tchttp.NewCommonResponse()
	if err := c.Send(req, resp); err != nil {
		return err
	}
	if out != nil {
		var env struct{ Response json.RawMessage }
		if err := json.Unmarshal(resp.GetBody(), &env); err != nil {
			t.Fatalf("decode envelope: %v", err)
		}
		if err := json.Unmarshal(env.Response, out); err != nil {
			t.Fatalf("decode Response %s: %v", env.Response, err)
		}
	}
	return nil
}

// errCode is the cloud error code of an SDK error, or "" for nil.
func errCode(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var sdkErr *tcerr.TencentCloudSDKError
	if !errors.As(err, &sdkErr) {
		t.Fatalf("not an SDK error: %T %v", err, err)
	}
	return sdkErr.GetCode()
}

type createResp struct {
	TaskId      int64
	DownloadUrl string
	RequestId   string
}

type pollResp struct {
	Status      string
	DownloadUrl string
	RequestId   string
}

func createTask(t *testing.T, c *common.Client, params map[string]any) int64 {
	t.Helper()
	var r createResp
	if err := sdkCall(t, c, APIVersion, "ExportLicenseDetail", params, &r); err != nil {
		t.Fatalf("ExportLicenseDetail(%v): %v", params, err)
	}
	if r.TaskId <= 0 || r.DownloadUrl != "" || r.RequestId == "" {
		t.Fatalf("ExportLicenseDetail answer %+v", r)
	}
	return r.TaskId
}

func pollTask(t *testing.T, c *common.Client, id int64) pollResp {
	t.Helper()
	var r pollResp
	if err := sdkCall(t, c, APIVersion, "ExportTasks", map[string]any{"TaskId": strconv.FormatInt(id, 10)}, &r); err != nil {
		t.Fatalf("ExportTasks(%d): %v", id, err)
	}
	return r
}

// signedRequest builds a hand-signed TC3 request: the SDK cannot send the
// malformed bodies and headers some tests need. signBody is what the
// signature covers and body what is sent (they differ to tamper).
type signedRequest struct {
	id, key    string
	timestamp  int64
	action     string
	version    string
	signBody   string
	body       string
	mutate     func(*http.Request) // after signing
	contentTyp string
}

func (s *server) do(t *testing.T, sr signedRequest) (code string, resp map[string]any) {
	t.Helper()
	if sr.id == "" {
		sr.id, sr.key = testID, testKey
	}
	if sr.timestamp == 0 {
		sr.timestamp = time.Now().Unix()
	}
	if sr.version == "" {
		sr.version = APIVersion
	}
	if sr.contentTyp == "" {
		sr.contentTyp = "application/json"
	}
	if sr.signBody == "" {
		sr.signBody = sr.body
	}
	req, err := http.NewRequest(http.MethodPost, s.url("/"), strings.NewReader(sr.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", sr.contentTyp)
	req.Header.Set("X-TC-Action", sr.action)
	req.Header.Set("X-TC-Version", sr.version)
	req.Header.Set("X-TC-Timestamp", strconv.FormatInt(sr.timestamp, 10))
	req.Header.Set("Authorization", testAuthorization(sr.id, sr.key, s.addr, sr.contentTyp, sr.signBody, sr.timestamp))
	if sr.mutate != nil {
		sr.mutate(req)
	}
	return doRaw(t, req)
}

// doRaw sends req and decodes the API envelope.
func doRaw(t *testing.T, req *http.Request) (code string, resp map[string]any) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q: %s", res.StatusCode, res.Header.Get("Content-Type"), b)
	}
	var env struct {
		Response map[string]any
	}
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	if id, _ := env.Response["RequestId"].(string); id == "" {
		t.Fatalf("no RequestId in %s", b)
	}
	if e, ok := env.Response["Error"].(map[string]any); ok {
		code, _ = e["Code"].(string)
		if msg, _ := e["Message"].(string); msg == "" {
			t.Fatalf("error without message: %s", b)
		}
	}
	return code, env.Response
}

// testAuthorization is a test-side TC3 signer over content-type;host, written
// from the published algorithm; TestTestSignerMatchesSDK ties it to the SDK.
func testAuthorization(id, key, host, contentType, body string, ts int64) string {
	h := func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }
	mac := func(k []byte, s string) []byte { m := hmac.New(sha256.New, k); m.Write([]byte(s)); return m.Sum(nil) }
	date := time.Unix(ts, 0).UTC().Format("2006-01-02")
	canonical := fmt.Sprintf("POST\n/\n\ncontent-type:%s\nhost:%s\n\ncontent-type;host\n%s", contentType, host, h(body))
	scope := date + "/cwp/tc3_request"
	toSign := fmt.Sprintf("TC3-HMAC-SHA256\n%d\n%s\n%s", ts, scope, h(canonical))
	k := mac(mac(mac([]byte("TC3"+key), date), "cwp"), "tc3_request")
	return fmt.Sprintf("TC3-HMAC-SHA256 Credential=%s/%s, SignedHeaders=content-type;host, Signature=%s",
		id, scope, hex.EncodeToString(mac(k, toSign)))
}

// roundTripFunc adapts a function to http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// readBody drains r.Body and replaces it so the request can still be sent.
func readBody(t *testing.T, r *http.Request) []byte {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func readCloser(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }
