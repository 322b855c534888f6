package service

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
)

// GetBudgetStatus reports the cloud budget: for each action its configured
// rate, the rate it allows now (lower while the cloud throttles), the cloud's quota and the calls of
// the last minute; and the tasks sharing the read budget.
func (s *Service) GetBudgetStatus(_ context.Context, _ *cwpexportv1.GetBudgetStatusRequest) (*cwpexportv1.GetBudgetStatusResponse, error) {
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
	return resp, nil
}
