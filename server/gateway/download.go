package gateway

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
)

// downloadPattern is DownloadExport's REST route; the handler below takes
// precedence over the generated one, which would wrap the bytes in JSON.
const downloadPattern = "/v1/export-tasks/{task_id}:download"

// serveDownload answers DownloadExport over REST with the file's exact
// bytes: it calls the gRPC method as a client and writes each chunk's data
// as it arrives. Errors before the first chunk are answered like any other
// REST error; a failure after the headers were sent aborts the response, so
// the client sees a broken transfer rather than a short file.
func serveDownload(mux *runtime.ServeMux, client cwpexportv1.LicenseExportServiceClient) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		_, outbound := runtime.MarshalerForRequest(mux, r)
		ctx, err := runtime.AnnotateContext(r.Context(), mux, r, "/cwpexport.v1.LicenseExportService/DownloadExport", runtime.WithHTTPPathPattern(downloadPattern))
		if err != nil {
			runtime.HTTPError(r.Context(), mux, outbound, w, r, err)
			return
		}
		stream, err := client.DownloadExport(ctx, &cwpexportv1.DownloadExportRequest{TaskId: params["task_id"]})
		if err != nil {
			runtime.HTTPError(ctx, mux, outbound, w, r, err)
			return
		}
		msg, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the download ended before it began")
			}
			runtime.HTTPError(ctx, mux, outbound, w, r, err)
			return
		}
		h := w.Header()
		h.Set("Content-Type", msg.GetContentType())
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": msg.GetFileName()}))
		h.Set("X-Content-Type-Options", "nosniff")
		if n := msg.GetTotalSize(); n >= 0 {
			h.Set("Content-Length", strconv.FormatInt(n, 10))
		}
		w.WriteHeader(http.StatusOK)
		for {
			if len(msg.GetData()) > 0 {
				if _, err := w.Write(msg.GetData()); err != nil {
					return // the client went away; its context ends the stream
				}
			}
			msg, err = stream.Recv()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				panic(http.ErrAbortHandler)
			}
		}
	}
}
