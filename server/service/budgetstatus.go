package service

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
)

// GetBudgetStatus reports the cloud budget: for each action its configured
// rate, the rate it allows now (lower while the cloud throttles), the cloud's quota and the calls of
// the last minute; and the tasks sharing the read budget. The calls and
// the tasks are every caller's activity: only a caller who may see every
// task (an operator, or anyone when callers are not authenticated) is
// told them; others get the rates and quota alone (see
// withoutAccountActivity).
func (s *Service) GetBudgetStatus(ctx context.Context, _ *cwpexportv1.GetBudgetStatusRequest) (*cwpexportv1.GetBudgetStatusResponse, error) {
	if s.opts.Budget == nil {
		return nil, apierror.Error(cwpexportv1.ErrorReason_BUDGET_NOT_MEASURED, "this server does not measure its cloud calls")
	}
	st := s.opts.Budget.Status(s.opts.Now())
	resp := &cwpexportv1.GetBudgetStatusResponse{
		ReadBudgetTasks: int32(st.ReadTasks),
		WindowEndTime:   timestamppb.New(st.WindowEnd),
	}
	for _, a := range st.Actions {
		resp.Actions = append(resp.Actions, &cwpexportv1.ActionBudget{
			Action:         a.Action,
			ConfiguredRate: a.Configured,
			EffectiveRate:  a.Effective,
			CloudQuota:     a.CloudQuota,
			CallsPerSecond: a.CallsPerSecond,
			ThrottledCalls: a.Throttled,
		})
	}
	if !s.scope(ctx).All() {
		withoutAccountActivity(resp)
	}
	return resp, nil
}

// withoutAccountActivity removes from a budget status what tells of other
// callers' activity — the calls of each second, the throttled calls, the
// tasks being followed — and keeps what every caller needs to pace itself:
// the configured rates, the cloud's quota, and the rates allowed now, which
// are below the configured ones while calls are being held back.
func withoutAccountActivity(st *cwpexportv1.GetBudgetStatusResponse) {
	for _, a := range st.GetActions() {
		a.CallsPerSecond, a.ThrottledCalls = nil, 0
	}
	st.ReadBudgetTasks, st.ActivityWithheld = 0, true
}
