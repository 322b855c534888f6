package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
)

func (a *app) downloadCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "download TASK [FILE]",
		Short: "Save a finished task's exported file (by default under the file's own name, in the current directory)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := ""
			if len(args) == 2 {
				file = args[1]
			}
			return a.download(cmd.Context(), &cwpexportv1.ExportTask{TaskId: args[0]}, file)
		},
	}
}

func (a *app) listCommand() *cobra.Command {
	var (
		pageSize int32
		state    string
		all      bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the tasks the service created, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &cwpexportv1.ListExportTasksRequest{PageSize: pageSize}
			if state != "" {
				v, ok := cwpexportv1.ExportTaskState_value["EXPORT_TASK_STATE_"+strings.ToUpper(state)]
				if !ok {
					return exitWith(ExitInvalid, "--state %q: want pending, finished or error", state)
				}
				req.State = cwpexportv1.ExportTaskState(v)
			}
			tw := tabwriter.NewWriter(a.io.Stdout, 0, 4, 2, ' ', 0)
			if a.output == "text" {
				fmt.Fprintln(tw, "TASK\tSTATE\tCREATED\tREQUEST ID")
			}
			for {
				res, err := a.client.ListExportTasks(cmd.Context(), req)
				if err != nil {
					return err
				}
				for _, t := range res.GetTasks() {
					if a.output == "json" {
						if err := a.printJSON(t); err != nil {
							return err
						}
						continue
					}
					created := ""
					if t.GetCreateTime() != nil {
						created = t.GetCreateTime().AsTime().Local().Format(time.DateTime)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.GetTaskId(), stateName(t.GetState()), created, t.GetRequestId())
				}
				if !all || res.GetNextPageToken() == "" {
					break
				}
				req.PageToken = res.GetNextPageToken()
			}
			return tw.Flush()
		},
	}
	cmd.Flags().Int32Var(&pageSize, "page-size", 0, "tasks per page, 1 to 1000 (default: the service's, 50)")
	cmd.Flags().StringVar(&state, "state", "", "only tasks in this state: pending, finished or error")
	cmd.Flags().BoolVar(&all, "all", false, "follow next-page tokens to list every task")
	return cmd
}

// download saves task's file to path through the service's DownloadExport,
// checking the SHA-256 it sends; an empty path means the file's own name,
// as the service sends it, in the current directory. The file appears under
// its name only once it is complete. A download broken by Unavailable (the
// service or its replica went away) starts again from the beginning, into
// the emptied partial file, for up to --reconnect-timeout after its first
// break.
func (a *app) download(ctx context.Context, task *cwpexportv1.ExportTask, path string) error {
	out := &partFile{path: path, taskID: task.GetTaskId()}
	defer out.discard()

	sum := sha256.New()
	start := time.Now()
	r := a.newRetrier()
	var (
		n   int64
		err error
	)
	for {
		n, err = a.downloadRPC(ctx, task.GetTaskId(), out, sum)
		if err == nil {
			break
		}
		wait, ok := r.next(err)
		if !ok || ctx.Err() != nil {
			a.gaveUp(nil, r, "restarting the download of task "+task.GetTaskId())
			return err
		}
		a.notice("download of task %s broke off after %d bytes (%s); starting again from the beginning in %s (attempt %d)",
			task.GetTaskId(), n, briefly(err), wait.Round(10*time.Millisecond), r.attempt)
		if err := sleep(ctx, wait); err != nil {
			return err
		}
		if err := out.reset(); err != nil {
			return err
		}
		sum.Reset()
	}
	if err := out.save(); err != nil {
		return err
	}
	digest := hex.EncodeToString(sum.Sum(nil))
	if a.output == "json" {
		b, _ := json.Marshal(map[string]any{"taskId": task.GetTaskId(), "file": out.path, "bytes": n, "sha256": digest})
		_, err = fmt.Fprintf(a.io.Stdout, "%s\n", b)
		return err
	}
	_, err = fmt.Fprintf(a.io.Stdout, "saved %d bytes to %s in %s (sha256 %s)\n", n, out.path, time.Since(start).Round(time.Millisecond), digest)
	return err
}

// partFile is a download's file, written under a temporary name beside its
// final one and renamed to it only once complete.
type partFile struct {
	// path is the final name; empty until the service names the file.
	path   string
	taskID string
	// chosen is set when the name is the service's: an existing file of
	// that name is then never replaced.
	chosen bool
	f      *os.File
}

// open returns the partial file, creating it on first use; served is the
// file's name as the service sent it, used when no path was given.
func (p *partFile) open(served string) (io.Writer, error) {
	if p.f != nil {
		return p.f, nil
	}
	if p.path == "" {
		p.path, p.chosen = localName(served, p.taskID), true
		if err := p.checkFree(); err != nil {
			return nil, err
		}
	}
	f, err := os.CreateTemp(filepath.Dir(p.path), "."+filepath.Base(p.path)+".part-*")
	if err != nil {
		return nil, exitWith(ExitFailure, "create %s: %v", p.path, err)
	}
	p.f = f
	return f, nil
}

// checkFree refuses to replace an existing file with a name the user did
// not give.
func (p *partFile) checkFree() error {
	if _, err := os.Lstat(p.path); p.chosen && err == nil {
		return exitWith(ExitFailure, "%s already exists: name the file to save to (cwpexport download %s FILE)", p.path, p.taskID)
	}
	return nil
}

// reset empties the partial file for a download that starts again.
func (p *partFile) reset() error {
	if p.f == nil {
		return nil
	}
	if _, err := p.f.Seek(0, io.SeekStart); err != nil {
		return exitWith(ExitFailure, "rewind %s: %v", p.f.Name(), err)
	}
	if err := p.f.Truncate(0); err != nil {
		return exitWith(ExitFailure, "truncate %s: %v", p.f.Name(), err)
	}
	return nil
}

// save gives the complete file its name.
func (p *partFile) save() error {
	if _, err := p.open(""); err != nil {
		return err
	}
	if err := p.f.Close(); err != nil {
		return exitWith(ExitFailure, "write %s: %v", p.path, err)
	}
	if err := p.checkFree(); err != nil {
		return err
	}
	if err := os.Rename(p.f.Name(), p.path); err != nil {
		return exitWith(ExitFailure, "save %s: %v", p.path, err)
	}
	return nil
}

// discard removes the partial file; after save it is already gone.
func (p *partFile) discard() {
	if p.f != nil {
		p.f.Close()
		os.Remove(p.f.Name())
	}
}

// localName is the file name the service sent, reduced to a plain name in
// the current directory, or a name made of the task id when it sent none
// that is safe to use.
func localName(served, taskID string) string {
	name := served[strings.LastIndexAny(served, `/\`)+1:]
	if name == "" || strings.HasPrefix(name, ".") || strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return "cwp-license-detail-" + taskID + ".csv"
	}
	return name
}

// downloadRPC streams the file through DownloadExport into w.
func (a *app) downloadRPC(ctx context.Context, taskID string, out *partFile, sum hash.Hash) (int64, error) {
	stream, err := a.client.DownloadExport(ctx, &cwpexportv1.DownloadExportRequest{TaskId: taskID})
	if err != nil {
		return 0, err
	}
	var (
		n    int64
		w    io.Writer
		bar  *progressbar.ProgressBar
		want string
		done bool
	)
	defer func() {
		switch {
		case bar == nil:
		case done:
			_ = bar.Finish()
		default:
			_ = bar.Exit() // a broken download's bar stays where it broke
		}
	}()
	for {
		msg, err := stream.Recv()
		if endOfStream(err) {
			break
		}
		if err != nil {
			return n, err
		}
		if bar == nil {
			f, err := out.open(msg.GetFileName())
			if err != nil {
				return n, err
			}
			w = io.MultiWriter(f, sum)
			bar = a.progressBar(msg.GetTotalSize(), msg.GetFileName())
		}
		if msg.GetOffset() != n {
			return n, exitWith(ExitService, "download of task %s: chunk at offset %d, expected %d", taskID, msg.GetOffset(), n)
		}
		if _, err := w.Write(msg.GetData()); err != nil {
			return n, exitWith(ExitFailure, "write: %v", err)
		}
		n += int64(len(msg.GetData()))
		_ = bar.Add64(int64(len(msg.GetData())))
		if s := msg.GetSha256(); s != "" {
			want = s
		}
	}
	if got := hex.EncodeToString(sum.Sum(nil)); want != "" && !strings.EqualFold(got, want) {
		return n, exitWith(ExitService, "download of task %s: SHA-256 %s, the service announced %s", taskID, got, want)
	}
	done = true
	return n, nil
}

// progressBar shows bytes, total and rate on a terminal, nothing otherwise.
// A total of -1 (unknown) shows a spinner with the bytes so far.
func (a *app) progressBar(total int64, name string) *progressbar.ProgressBar {
	if total <= 0 {
		total = -1
	}
	visible := a.tty && a.output == "text"
	opts := []progressbar.Option{
		progressbar.OptionSetVisibility(visible),
		progressbar.OptionSetWriter(a.io.Stdout),
		progressbar.OptionSetDescription(name),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(65 * time.Millisecond),
		progressbar.OptionShowCount(),
	}
	if visible {
		opts = append(opts, progressbar.OptionOnCompletion(func() { fmt.Fprintln(a.io.Stdout) }))
	}
	return progressbar.NewOptions64(total, opts...)
}
