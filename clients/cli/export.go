package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
)

// exportFlags are the conditions of an export as typed on the command line.
type exportFlags struct {
	filters   []string
	exact     bool
	tags      []string
	history   bool
	month     string
	requestID string
	watch     bool
	download  string
}

func (a *app) exportCommand() *cobra.Command {
	var f exportFlags
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Start a license-detail export",
		Long: `Start a license-detail export. Without --watch it prints the new task and
returns at once; with --watch it follows the task to FINISHED or ERROR, showing
the progress the service observed (state, polls, elapsed time, next poll).
--download FILE follows the task and then saves its file.`,
		Example: `  cwpexport export --filter LicenseType=1 --watch
  cwpexport export --filter Keywords=web,db --exact --tag env=prod --watch --download out.csv
  cwpexport export --history --month 2026-10 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := f.request()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if !f.watch && f.download == "" {
				res, err := a.create(ctx, req)
				if err != nil {
					return err
				}
				return a.printTask(res, res.GetTask(), fmt.Sprintf("upstream request id %s", res.GetUpstreamRequestId()))
			}
			create := func(ctx context.Context) (recvFunc, error) {
				stream, err := a.client.ExportLicenseDetailAndWatch(ctx, &cwpexportv1.ExportLicenseDetailAndWatchRequest{
					Filters: req.GetFilters(), IsHistory: req.GetIsHistory(), Tags: req.GetTags(),
					ExportMonth: req.GetExportMonth(), RequestId: req.GetRequestId(),
				})
				if err != nil {
					return nil, err
				}
				return func() (watchMessage, error) { return stream.Recv() }, nil
			}
			task, err := a.followTask(ctx, "", create)
			if err != nil {
				return err
			}
			return a.finish(cmd, task, f.download)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.filters, "filter", nil, "filter `Name=v1,v2` (repeatable; Name one of LicenseStatus, DeadlineStatus, ResourceId, Keywords, LicenseType)")
	fl.BoolVar(&f.exact, "exact", false, "match the filters' values exactly instead of fuzzily")
	fl.StringArrayVar(&f.tags, "tag", nil, "platform tag `key=value` (repeatable; key= or key matches any value)")
	fl.BoolVar(&f.history, "history", false, "export the usage history (all authorization details)")
	fl.StringVar(&f.month, "month", "", "month to export, `YYYY-MM` (with --history)")
	fl.StringVar(&f.requestID, "request-id", "", "client-chosen UUID: a retry with the same id returns the first task (default: a new UUID, which the CLI reuses when it retries)")
	fl.BoolVar(&f.watch, "watch", false, "follow the export with live progress until it ends")
	fl.StringVar(&f.download, "download", "", "follow the export, then save its file to `FILE`")
	return cmd
}

// request builds the API request. Only the command-line syntax is checked
// here; the service validates the values and explains what is wrong. A
// request id is always sent, so that the CLI can send the request again
// after Unavailable without starting a second export.
func (f exportFlags) request() (*cwpexportv1.ExportLicenseDetailRequest, error) {
	req := &cwpexportv1.ExportLicenseDetailRequest{IsHistory: f.history, ExportMonth: f.month, RequestId: f.requestID}
	if req.RequestId == "" {
		req.RequestId = uuid.NewString()
	}
	for _, s := range f.filters {
		name, values, ok := strings.Cut(s, "=")
		if !ok || name == "" {
			return nil, exitWith(ExitInvalid, "--filter %q: want Name=value[,value...]", s)
		}
		req.Filters = append(req.Filters, &cwpexportv1.Filter{Name: name, Values: strings.Split(values, ","), ExactMatch: f.exact})
	}
	for _, s := range f.tags {
		key, value, _ := strings.Cut(s, "=")
		req.Tags = append(req.Tags, &cwpexportv1.Tag{TagKey: key, TagValue: value})
	}
	return req, nil
}

func (a *app) watchCommand() *cobra.Command {
	var download string
	cmd := &cobra.Command{
		Use:   "watch TASK",
		Short: "Follow a task with live progress until it is FINISHED or ERROR",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			task, err := a.followTask(cmd.Context(), args[0], nil)
			if err != nil {
				return err
			}
			return a.finish(cmd, task, download)
		},
	}
	cmd.Flags().StringVar(&download, "download", "", "when FINISHED, save the file to `FILE`")
	return cmd
}

// create starts an export, sending it again with its request id while the
// answer is Unavailable (within --reconnect-timeout): the service answers
// a repeated request id with the first task, never a second export.
func (a *app) create(ctx context.Context, req *cwpexportv1.ExportLicenseDetailRequest) (*cwpexportv1.ExportLicenseDetailResponse, error) {
	r := a.newRetrier()
	for {
		res, err := a.client.ExportLicenseDetail(ctx, req)
		if err == nil {
			return res, nil
		}
		wait, ok := r.next(err)
		if !ok || ctx.Err() != nil {
			a.gaveUp(nil, r, "retrying the export with request id "+req.GetRequestId())
			return nil, err
		}
		fmt.Fprintf(a.io.Stderr, "cwpexport: retrying the export with request id %s in %s (attempt %d) after %s\n",
			req.GetRequestId(), wait.Round(10*time.Millisecond), r.attempt, briefly(err))
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

func (a *app) getCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get TASK",
		Short: "Print a task's current state and observed progress",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := a.client.GetExportTask(cmd.Context(), &cwpexportv1.GetExportTaskRequest{TaskId: args[0]})
			if err != nil {
				return err
			}
			return a.printTask(res, res.GetTask(), progressText(res.GetTask(), res.GetProgress(), 0))
		},
	}
}

// finish turns a followed task's end into the exit code, downloading the
// file first when asked.
func (a *app) finish(cmd *cobra.Command, task *cwpexportv1.ExportTask, file string) error {
	switch task.GetState() {
	case cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED:
		if file != "" {
			return a.download(cmd.Context(), task, file)
		}
		return nil
	case cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_ERROR:
		msg := task.GetErrorMessage()
		if msg == "" {
			msg = "the export failed"
		}
		return exitWith(ExitExportError, "task %s ended in ERROR: %s (cloud RequestId %s)", task.GetTaskId(), msg, task.GetLastUpstreamRequestId())
	}
	return exitWith(ExitService, "the watch of task %s ended before the task did", task.GetTaskId())
}

// printTask prints a unary answer: the whole message as JSON, or one line.
func (a *app) printTask(msg proto.Message, t *cwpexportv1.ExportTask, extra string) error {
	if a.output == "json" {
		return a.printJSON(msg)
	}
	line := fmt.Sprintf("task %s  %s", t.GetTaskId(), stateName(t.GetState()))
	if extra != "" {
		line += "  " + extra
	}
	if u := t.GetDownloadUrl(); u != "" {
		line += "\ndownload: " + u
	}
	if m := t.GetErrorMessage(); m != "" {
		line += "\nerror: " + m
	}
	_, err := fmt.Fprintln(a.io.Stdout, line)
	return err
}

func (a *app) printJSON(msg proto.Message) error {
	b, err := protojson.Marshal(msg)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(a.io.Stdout, "%s\n", b)
	return err
}

func stateName(s cwpexportv1.ExportTaskState) string {
	return strings.TrimPrefix(s.String(), "EXPORT_TASK_STATE_")
}

// endOfStream tells a clean end of a stream from a failure.
func endOfStream(err error) bool { return errors.Is(err, io.EOF) }
