package service

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/cloud"
)

// CloudQuota is the cloud's documented limit of requests per second per
// action and account.
const CloudQuota = 20

// CloudCallCounter reports the calls the service made to the cloud, as
// counted where those calls are instrumented.
type CloudCallCounter interface {
	// CloudCalls returns the calls made to action in each of the whole
	// seconds of the last minute before now, oldest first, and how many of
	// them the cloud answered with RequestLimitExceeded.
	CloudCalls(action string, now time.Time) (perSecond []int32, throttled int32)
}

// Rates reports a cloud action's budget (see package budget).
type Rates interface {
	// Rate is the calls per second the budget allows now.
	Rate() float64
	// Configured is the configured calls per second.
	Configured() float64
}

// BudgetOptions configure GetBudgetStatus.
type BudgetOptions struct {
	// Calls counts the cloud calls; without it, or without the budgets,
	// GetBudgetStatus answers Unimplemented.
	Calls CloudCallCounter
	// Read and Create are the budgets of ExportTasks and
	// ExportLicenseDetail.
	Read, Create Rates
}

// GetBudgetStatus reports the cloud budget: for each action its configured
// rate, the rate it allows now (lower while the cloud throttles), the cloud's quota and the calls of
// the last minute; and the tasks sharing the read budget.
func (s *Service) GetBudgetStatus(_ context.Context, _ *cwpexportv1.GetBudgetStatusRequest) (*cwpexportv1.GetBudgetStatusResponse, error) {
	b := s.opts.Budget
	if b.Calls == nil || b.Read == nil || b.Create == nil {
		return nil, apierror.Error(cwpexportv1.ErrorReason_BUDGET_NOT_MEASURED, "this server does not measure its cloud calls")
	}
	now := s.opts.Now()
	action := func(name string, r Rates) *cwpexportv1.ActionBudget {
		perSecond, throttled := b.Calls.CloudCalls(name, now)
		return &cwpexportv1.ActionBudget{
			Action:         name,
			ConfiguredRate: r.Configured(),
			EffectiveRate:  r.Rate(),
			CloudQuota:     CloudQuota,
			CallsPerSecond: perSecond,
			ThrottledCalls: throttled,
		}
	}
	return &cwpexportv1.GetBudgetStatusResponse{
		Actions: []*cwpexportv1.ActionBudget{
			action(cloud.ActionExportTasks, b.Read),
			action(cloud.ActionExportLicenseDetail, b.Create),
		},
		ReadBudgetTasks: int32(s.opts.Tracker.Stats().Scheduled),
		WindowEndTime:   timestamppb.New(now.Truncate(time.Second)),
	}, nil
}
