package app

import (
	"context"
	"fmt"

	"github.com/cwpexport/cwpexport/server/budget"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/fleet"
	"github.com/cwpexport/cwpexport/server/internal/lifecycle"
	"github.com/cwpexport/cwpexport/server/tracker"
)

// engines are what a fleet of replicas shares and a single process keeps
// to itself: the budgets of the cloud's two actions and the schedule of
// the polls. They are chosen here, once, with the registry's database: on
// SQLite (one process per data directory) the process's own; on
// PostgreSQL the fleet's, in the same database.
type engines struct {
	reads, creates budget.Engine
	schedule       tracker.Scheduler
	// fleet is nil for a single process.
	fleet *fleet.Fleet
	// refresh keeps the fleet's health and shared figures current; nil
	// for one process.
	refresh []lifecycle.Part
}

// openEngines chooses the engines. reader makes the polls.
func (s *Server) openEngines(ctx context.Context, reader tracker.Reader) (engines, error) {
	o := s.opts
	if s.pool == nil {
		reads, err := budget.New(budget.Options{Rate: o.ReadRate, Action: cloud.ActionExportTasks, TracerProvider: s.tracerProvider()})
		if err != nil {
			return engines{}, fmt.Errorf("-read-rate: %w", err)
		}
		creates, err := budget.New(budget.Options{Rate: o.CreateRate, Action: cloud.ActionExportLicenseDetail, TracerProvider: s.tracerProvider()})
		if err != nil {
			return engines{}, fmt.Errorf("-create-rate: %w", err)
		}
		schedule := tracker.NewLocal(tracker.LocalOptions{
			Cloud: reader, Budget: reads, Pacing: s.pacing(),
			Logger: s.log, BudgetWaited: s.metrics.BudgetWaited, TracerProvider: s.tracerProvider(),
		})
		return engines{reads: reads, creates: creates, schedule: schedule}, nil
	}
	f, err := fleet.Open(ctx, s.pool, fleet.Options{Replica: s.instance, Logger: s.log})
	if err != nil {
		return engines{}, err
	}
	reads, err := f.Budget(fleet.BudgetOptions{Action: cloud.ActionExportTasks, Rate: o.ReadRate, TracerProvider: s.tracerProvider()})
	if err != nil {
		return engines{}, fmt.Errorf("-read-rate: %w", err)
	}
	creates, err := f.Budget(fleet.BudgetOptions{Action: cloud.ActionExportLicenseDetail, Rate: o.CreateRate, TracerProvider: s.tracerProvider()})
	if err != nil {
		return engines{}, fmt.Errorf("-create-rate: %w", err)
	}
	schedule, err := f.Schedule(fleet.ScheduleOptions{
		Cloud: reader, Budget: reads, Pacing: s.pacing(),
		Freshness: o.Freshness, Logger: s.log, BudgetWaited: s.metrics.BudgetWaited, TracerProvider: s.tracerProvider(),
	})
	if err != nil {
		return engines{}, err
	}
	s.log.Info("fleet engines on PostgreSQL: the cloud budgets and the poll schedule are shared by every replica of this database",
		"replica", f.Replica(), "read_rate", o.ReadRate, "create_rate", o.CreateRate)
	return engines{reads: reads, creates: creates, schedule: schedule, fleet: f,
		refresh: []lifecycle.Part{
			lifecycle.Loop("fleet: database ping", f.PingWhileIdle),
			lifecycle.Loop("fleet: read budget", reads.Follow),
			lifecycle.Loop("fleet: create budget", creates.Follow),
		}}, nil
}

// pacing is how each task's polls are paced, in one process or a fleet.
func (s *Server) pacing() tracker.Pacing {
	return tracker.Pacing{MinInterval: s.opts.MinPollInterval, MaxBackoff: s.opts.MaxPollBackoff, PollTimeout: s.opts.PollTimeout}
}

// healthy reports whether the engines can work: always for one process;
// for a fleet, while its database answers.
func (e engines) healthy() bool { return e.fleet == nil || e.fleet.Healthy() }
