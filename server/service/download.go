package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	neturl "net/url"
	"path"
	"strings"

	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/exports"
	"github.com/cwpexport/cwpexport/server/filefetch"
	"github.com/cwpexport/cwpexport/server/internal/deadline"
	"github.com/cwpexport/cwpexport/server/taskstore"
)

// DownloadExport streams a finished task's file: data chunks in order, the
// first carrying the file name and media type, then a last message with no
// data that carries the file's SHA-256. A download URL the object storage
// refuses (expired: HTTP 403; unknown: 404; or a storage that cannot be
// reached, as when the URL names an endpoint that moved) is refreshed
// through ExportTasks once, within the read budget.
func (s *Service) DownloadExport(req *cwpexportv1.DownloadExportRequest, stream cwpexportv1.LicenseExportService_DownloadExportServer) error {
	id, err := parseTaskID(req.GetTaskId())
	if err != nil {
		return err
	}
	ctx := stream.Context()
	url, err := s.downloadURL(ctx, id)
	if err != nil {
		return err
	}
	resp, err := s.fetch(ctx, id, url)
	if stale(resp, err) {
		if resp != nil {
			resp.Body.Close()
		}
		if url, err = s.refreshURL(ctx, id); err != nil {
			return err
		}
		resp, err = s.fetch(ctx, id, url)
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return downloadFailed(id, fmt.Sprintf("the object storage answered HTTP %d", resp.StatusCode))
	}
	if err := filefetch.Check(resp, s.opts.MaxDownloadBytes); err != nil {
		s.opts.Logger.WarnContext(ctx, "an exported file refused", "task_id", id, "err", err)
		return downloadFailed(id, err.Error())
	}
	return s.streamFile(ctx, id, resp, stream)
}

// stale reports whether a fetch's outcome says the download URL no longer
// works, so that a new one from the cloud is worth a try.
func stale(resp *http.Response, err error) bool {
	if err != nil {
		var u unreachable
		return errors.As(err, &u)
	}
	return resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusNotFound
}

// downloadURL returns the task's last known download URL, NotFound when
// the caller may not see the task (as for a task that does not exist), or
// FailedPrecondition when the task is not FINISHED. A task the registry
// does not record as FINISHED is asked of the tracker, which answers with
// the cloud's failure's status shortly before the caller's deadline.
func (s *Service) downloadURL(ctx context.Context, id int64) (string, error) {
	row, ok, err := s.opts.Registry.Get(ctx, id)
	if err != nil {
		return "", apierror.Registry(ctx, err)
	}
	if scope := s.scope(ctx); !(ok && scope.Allows(row.Creator) || !ok && scope.All()) {
		return "", taskNotFound(id)
	}
	if ok && row.State == taskstore.StateFinished && row.DownloadURL != "" {
		return row.DownloadURL, nil
	}
	gctx, cancel := deadline.AnswerBefore(ctx, s.opts.GetTimeout)
	defer cancel()
	snap, err := s.opts.Tracker.Get(gctx, id)
	if err != nil {
		return "", apierror.Cloud(gctx, id, err)
	}
	if snap.State != cloud.StatusFinished {
		return "", notFinished(id, snap.State)
	}
	return snap.DownloadURL, nil
}

// refreshURL asks the cloud for a new download URL: a poll of the task
// through the tracker, within the read budget, whose observation the
// tracker keeps and the registry records.
func (s *Service) refreshURL(ctx context.Context, id int64) (string, error) {
	ctx, cancel := deadline.AnswerBefore(ctx, s.opts.GetTimeout)
	defer cancel()
	snap, err := s.opts.Tracker.Refresh(ctx, id)
	if err != nil {
		return "", apierror.Cloud(ctx, id, err)
	}
	if snap.State != cloud.StatusFinished {
		return "", notFinished(id, snap.State)
	}
	return snap.DownloadURL, nil
}

// unreachable is the status of a fetch that could not reach the object
// storage.
type unreachable struct{ error }

// GRPCStatus is the status the caller receives.
func (u unreachable) GRPCStatus() *status.Status { return status.Convert(u.error) }

func (s *Service) fetch(ctx context.Context, id int64, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, downloadFailed(id, "the cloud gave a download URL that is not a valid URL")
	}
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, apierror.Context(ctx, ctx.Err())
		}
		// The pre-signed URL stays out of answers and logs: its signature
		// grants access to the file.
		var uerr *neturl.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		s.opts.Logger.WarnContext(ctx, "fetch an exported file", "task_id", id, "err", err)
		if errors.Is(err, filefetch.ErrRefused) {
			return nil, downloadFailed(id, "the download URL leads elsewhere than the object storage")
		}
		return nil, unreachable{downloadFailed(id, "the object storage could not be reached")}
	}
	return resp, nil
}

// streamFile sends the body in chunks of ChunkSize, reusing one buffer:
// gRPC encodes a message before Send returns, and Send blocks while the
// client's flow-control window is full, so memory stays flat.
func (s *Service) streamFile(ctx context.Context, id int64, resp *http.Response, stream cwpexportv1.LicenseExportService_DownloadExportServer) error {
	total := resp.ContentLength // -1 when unknown
	name := fileName(resp.Header.Get("Content-Disposition"), id)
	ctype := resp.Header.Get("Content-Type")
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	h := sha256.New()
	// One byte more than allowed tells a file too large from one that is not.
	body := io.LimitReader(resp.Body, s.opts.MaxDownloadBytes+1)
	buf := make([]byte, s.opts.ChunkSize)
	var off int64
	first := true
	for {
		n, rerr := io.ReadFull(body, buf)
		if off+int64(n) > s.opts.MaxDownloadBytes {
			return downloadFailed(id, fmt.Sprintf("the file is more than the %d bytes a download may be", s.opts.MaxDownloadBytes))
		}
		if n > 0 {
			h.Write(buf[:n])
			msg := &cwpexportv1.DownloadExportResponse{Data: buf[:n], Offset: off, TotalSize: total}
			if first {
				msg.FileName, msg.ContentType, first = name, ctype, false
			}
			if err := stream.Send(msg); err != nil {
				return err
			}
			off += int64(n)
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			if ctx.Err() != nil {
				return apierror.Context(ctx, ctx.Err())
			}
			s.opts.Logger.WarnContext(ctx, "read an exported file", "task_id", id, "offset", off, "err", rerr)
			return downloadFailed(id, fmt.Sprintf("the transfer from the object storage broke off after %d bytes", off))
		}
	}
	if total >= 0 && off != total {
		return downloadFailed(id, fmt.Sprintf("the object storage sent %d of %d bytes", off, total))
	}
	last := &cwpexportv1.DownloadExportResponse{Offset: off, TotalSize: off, Sha256: hex.EncodeToString(h.Sum(nil))}
	if first {
		last.FileName, last.ContentType = name, ctype
	}
	return stream.Send(last)
}

// fileName takes the file name from a Content-Disposition header, keeping
// only a plain base name, or makes one up from the task id.
func fileName(disposition string, id int64) string {
	if _, params, err := mime.ParseMediaType(disposition); err == nil {
		name := path.Base(strings.ReplaceAll(params["filename"], "\\", "/"))
		if name != "" && name != "." && name != ".." && name != "/" && !strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '"' }) {
			return name
		}
	}
	return fmt.Sprintf("cwp-license-detail-%d.csv", id)
}

func notFinished(id int64, state cloud.Status) error {
	shown := exports.State(state).String()
	return apierror.New(cwpexportv1.ErrorReason_TASK_NOT_FINISHED,
		fmt.Sprintf("export task %d is %s, not FINISHED: only a finished export has a file to download", id, shown)).
		Meta(apierror.MetadataTaskID, fmt.Sprint(id)).Meta(apierror.MetadataState, shown).Err()
}

func downloadFailed(id int64, why string) error {
	return apierror.New(cwpexportv1.ErrorReason_DOWNLOAD_FAILED,
		fmt.Sprintf("downloading the file of export task %d failed: %s; retry later", id, why)).Meta(apierror.MetadataTaskID, fmt.Sprint(id)).Err()
}
