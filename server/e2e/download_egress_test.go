package e2e_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// TestDownloadGoesOnlyToTheStorage: the cloud's answer names a storage URL
// (here rewritten on its way from the emulator, as a compromised answer or
// storage could); the download proxy follows no redirect off that host,
// sends no Referer, and passes on nothing that cannot be an export file.
func TestDownloadGoesOnlyToTheStorage(t *testing.T) {
	var internalHits atomic.Int32
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		internalHits.Add(1)
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, "<html>AccessKeyId: internal-credential</html>")
	}))
	defer internal.Close()
	var referers atomic.Int32
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Referer") != "" {
			referers.Add(1)
		}
		switch r.URL.Path {
		case "/away.csv":
			http.Redirect(w, r, internal.URL+"/latest/meta-data/iam/security-credentials/", http.StatusFound)
		case "/page.csv":
			w.Header().Set("Content-Type", "text/html")
			_, _ = io.WriteString(w, "<html>a page</html>")
		case "/moved.csv":
			http.Redirect(w, r, "/file.csv?sig=2", http.StatusFound)
		default:
			w.Header().Set("Content-Type", "text/csv")
			_, _ = io.WriteString(w, "a,b\n1,2\n")
		}
	}))
	defer storage.Close()

	// The cloud is the emulator behind a proxy that replaces the download
	// URL of its ExportTasks answers with the storage's file of the moment.
	emu, err := emulator.New(emulator.Options{Credentials: map[string]string{testserver.SecretID: testserver.SecretKey}, PendingFor: -1})
	if err != nil {
		t.Fatal(err)
	}
	emuSrv := httptest.NewServer(emu)
	defer emuSrv.Close()
	var file atomic.Pointer[string]
	target, _ := url.Parse(emuSrv.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	downloadURL := regexp.MustCompile(`"DownloadUrl":"[^"]*"`)
	proxy.ModifyResponse = func(r *http.Response) error {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		b = downloadURL.ReplaceAll(b, []byte(`"DownloadUrl":"`+storage.URL+*file.Load()+`"`))
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		r.Header.Set("Content-Length", strconv.Itoa(len(b)))
		return nil
	}
	cloud := httptest.NewServer(proxy)
	defer cloud.Close()
	env := testserver.Start(t, testserver.Config{App: app.Options{
		Endpoint: strings.TrimPrefix(cloud.URL, "http://"), Scheme: "HTTP", Freshness: time.Nanosecond,
	}})

	download := func(path string) (string, error) {
		file.Store(&path)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		created, err := env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{})
		if err != nil {
			t.Fatal(err)
		}
		id, _ := strconv.ParseInt(created.GetTask().GetTaskId(), 10, 64)
		if err := emu.FinishTask(id); err != nil {
			t.Fatal(err)
		}
		stream, err := env.Client.DownloadExport(ctx, &cwpexportv1.DownloadExportRequest{TaskId: created.GetTask().GetTaskId()})
		if err != nil {
			return "", err
		}
		var got []byte
		for {
			msg, err := stream.Recv()
			if err == io.EOF {
				return string(got), nil
			}
			if err != nil {
				return string(got), err
			}
			got = append(got, msg.GetData()...)
		}
	}
	for _, path := range []string{"/away.csv", "/page.csv"} {
		got, err := download(path)
		if status.Code(err) != codes.Unavailable || got != "" {
			t.Errorf("%s: got %q, %v; want Unavailable and nothing", path, got, err)
		}
		if strings.Contains(status.Convert(err).Message(), "credential") {
			t.Errorf("%s: the answer shows the other host's body: %v", path, err)
		}
	}
	if n := internalHits.Load(); n != 0 {
		t.Errorf("the internal host was asked %d times", n)
	}
	if got, err := download("/moved.csv"); err != nil || got != "a,b\n1,2\n" {
		t.Errorf("a redirect on the storage host: %q, %v", got, err)
	}
	if n := referers.Load(); n != 0 {
		t.Errorf("%d requests to the storage carried a Referer", n)
	}
}

// TestRealCloudOnlyOverHTTPS: credentials for a real cloud with
// -cloud-scheme HTTP are refused, unless the operator says the cloud is
// private (an emulator).
func TestRealCloudOnlyOverHTTPS(t *testing.T) {
	o := app.Options{SecretID: testserver.SecretID, SecretKey: testserver.SecretKey, Endpoint: "127.0.0.1:1", Scheme: "HTTP", DataDir: t.TempDir()}
	if _, err := app.New(o); err == nil || !strings.Contains(err.Error(), "-insecure-allow-private-cloud") {
		t.Fatalf("HTTP with credentials: %v, want a refusal naming the setting", err)
	}
	o.AllowPrivateCloud = true
	srv, err := app.New(o)
	if err != nil {
		t.Fatalf("HTTP to a private cloud: %v", err)
	}
	// Serving ends at once and closes what New opened.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	lis := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	_ = srv.Serve(ctx, lis(), lis())
}
