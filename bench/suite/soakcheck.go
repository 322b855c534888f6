package suite

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
)

// monitor checks the continuous invariants every 5 s: the cloud's peak
// per 1-s window per action, one cloud task per request id; and samples
// every replica's RSS and the database's row counts.
func (s *soak) monitor(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
		at := time.Since(s.start)
		if st, err := s.env.emu.stats(); err == nil {
			for action, a := range st.Actions {
				s.mu.Lock()
				seen := s.peakSeen[action]
				s.peakSeen[action] = max(seen, a.PeakPerSecond)
				s.mu.Unlock()
				if a.PeakPerSecond > soakQuota && a.PeakPerSecond > seen {
					s.finding("%s: %d requests in the 1-s window ending %s (emulator clock), above %d", action, a.PeakPerSecond,
						a.PeakAt.Format("15:04:05.000"), soakQuota)
				}
			}
		}
		s.checkRequestIDs()
		s.mu.Lock()
		for _, rep := range s.env.replicas {
			if rep.killed {
				continue
			}
			if n, err := rep.p.rss(); err == nil {
				// Memory is judged over each process's own life.
				age := time.Since(s.born[rep.i%s.cfg.Replicas])
				s.rss[rep.p.name] = append(s.rss[rep.p.name], soakSample{age, n})
			}
		}
		s.mu.Unlock()
		s.countRows(ctx, at)
	}
}

// checkRequestIDs reads the emulator's journal: a request id that made
// more than one cloud task is a finding.
func (s *soak) checkRequestIDs() {
	tasks, err := s.env.cloudTasks()
	if err != nil {
		return
	}
	byRID := map[string][]int64{}
	for _, t := range tasks {
		if t.requestID != "" {
			byRID[t.requestID] = append(byRID[t.requestID], t.id)
		}
	}
	for rid, ids := range byRID {
		s.mu.Lock()
		seen := s.dupSeen[rid]
		s.dupSeen[rid] = s.dupSeen[rid] || len(ids) > 1
		s.mu.Unlock()
		if len(ids) > 1 && !seen {
			s.finding("request id %s made %d cloud tasks: %v", rid, len(ids), ids)
		}
	}
}

// soakTables are the tables whose rows the soak counts.
var soakTables = []string{"fleet_tasks", "fleet_interest", "export_tasks"}

func (s *soak) countRows(ctx context.Context, at time.Duration) {
	if s.db == nil || s.db.IsClosed() {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		db, err := pgx.Connect(cctx, s.pg.url(s.env.db))
		cancel()
		if err != nil {
			return
		}
		s.db = db
	}
	for _, t := range soakTables {
		var n int64
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := s.db.QueryRow(cctx, "SELECT count(*) FROM "+t).Scan(&n)
		cancel()
		if err != nil {
			s.db.Close(context.Background())
			s.db = nil
			return
		}
		s.mu.Lock()
		s.rows[t] = append(s.rows[t], soakSample{at, n})
		s.mu.Unlock()
	}
}

// registryTask is a task as ListExportTasks shows it.
type registryTask struct {
	state cwpexportv1.ExportTaskState
}

// listRegistry pages through ListExportTasks on a live replica.
func (s *soak) listRegistry(ctx context.Context) (map[string]registryTask, error) {
	out := map[string]registryTask{}
	token := ""
	for {
		rep := s.live(0)
		if rep == nil {
			return nil, errors.New("no live replica")
		}
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := rep.client.ListExportTasks(lctx, &cwpexportv1.ListExportTasksRequest{PageSize: 1000, PageToken: token})
		cancel()
		if err != nil {
			return nil, err
		}
		for _, t := range res.GetTasks() {
			out[t.GetTaskId()] = registryTask{state: t.GetState()}
		}
		if token = res.GetNextPageToken(); token == "" {
			return out, nil
		}
	}
}

// soakEnd is what the end's registry check found.
type soakEnd struct {
	cloud, inRegistry, ended int
	missing, pending         []string
	waited                   time.Duration
	err                      error
}

// checkRegistry waits (up to 3 minutes) until every task the cloud
// created is in the registry with its ending, then records what is not.
func (s *soak) checkRegistry(ctx context.Context) {
	began := time.Now()
	deadline := began.Add(3 * time.Minute)
	var end soakEnd
	for {
		end = soakEnd{}
		tasks, err := s.env.cloudTasks()
		if err == nil {
			var reg map[string]registryTask
			reg, err = s.listRegistry(ctx)
			if err == nil {
				end.cloud = len(tasks)
				for _, t := range tasks {
					id := fmt.Sprint(t.id)
					rt, ok := reg[id]
					switch {
					case !ok:
						end.missing = append(end.missing, id)
					case rt.state == cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_FINISHED || rt.state == cwpexportv1.ExportTaskState_EXPORT_TASK_STATE_ERROR:
						end.inRegistry++
						end.ended++
					default:
						end.inRegistry++
						end.pending = append(end.pending, id)
					}
				}
			}
		}
		end.err = err
		if (err == nil && len(end.missing) == 0 && len(end.pending) == 0) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(5 * time.Second)
	}
	end.waited = time.Since(began)
	if len(end.missing) > 0 {
		s.finding("%d of %d cloud tasks never reached the registry (e.g. %v)", len(end.missing), end.cloud, head(end.missing))
	}
	if len(end.pending) > 0 {
		s.finding("%d of %d tasks in the registry still not ended %s after the load stopped (e.g. %v)", len(end.pending), end.cloud,
			time.Since(s.createStop).Round(time.Second), head(end.pending))
	}
	if end.err != nil {
		s.finding("the registry check failed: %v", end.err)
	}
	s.end = end
}

func head(xs []string) []string { return xs[:min(len(xs), 5)] }
