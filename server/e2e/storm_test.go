package e2e_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// TestErrorStorms: while the cloud fails a random half of all calls,
// concurrent export-and-watch callers either get a clear error at creation
// or follow their task to FINISHED; the cloud holds exactly one task per
// successful creation.
func TestErrorStorms(t *testing.T) {
	for _, kind := range []emulator.FaultKind{emulator.FaultInternalError, emulator.FaultServiceUnavailable, emulator.FaultRequestLimitExceeded} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			env := testserver.Start(t, testserver.Config{
				Emulator: emulator.Options{PendingFor: 300 * time.Millisecond, Faults: []emulator.Fault{{Kind: kind, Probability: 0.5}}},
				App: app.Options{
					MinPollInterval: 30 * time.Millisecond, MaxPollBackoff: 120 * time.Millisecond,
					Heartbeat: 60 * time.Millisecond, Freshness: 20 * time.Millisecond,
				},
			})
			const callers = 8
			var (
				mu       sync.Mutex
				created  int64
				finished int64
				troubled bool
			)
			var wg sync.WaitGroup
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					s, err := env.Client.ExportLicenseDetailAndWatch(ctx, &cwpexportv1.ExportLicenseDetailAndWatchRequest{})
					if err != nil {
						t.Errorf("open: %v", err)
						return
					}
					first := true
					for {
						m, err := s.Recv()
						if errors.Is(err, io.EOF) {
							return
						}
						if err != nil {
							if c := status.Code(err); !first || (c != codes.Unavailable && c != codes.ResourceExhausted) {
								t.Errorf("stream ended with %v after the first message %v", err, !first)
							}
							return
						}
						mu.Lock()
						if first {
							created++
						}
						if m.GetProgress().GetConsecutivePollFailures() > 0 {
							troubled = true
						}
						if m.GetTask().GetState() == cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED {
							finished++
						}
						mu.Unlock()
						first = false
					}
				}()
			}
			wg.Wait()
			if created == 0 {
				t.Fatal("no creation got through the storm")
			}
			if finished != created {
				t.Errorf("%d of %d created exports were followed to FINISHED", finished, created)
			}
			if n := tasksCreated(env); n != created {
				t.Errorf("the cloud holds %d tasks for %d successful creations", n, created)
			}
			if !troubled {
				t.Log("no message happened to report a failed poll")
			}
		})
	}
}
