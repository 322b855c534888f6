package budget

import (
	"time"

	"github.com/cwpexport/cwpexport/server/cloud"
)

// CallCounter reports the calls the service made to the cloud, as counted
// where those calls are instrumented (package metrics, in a Window per
// action).
type CallCounter interface {
	// CloudCalls returns the calls made to action in each of the
	// CallWindow whole seconds before now, oldest first, and how many of
	// them the cloud answered with RequestLimitExceeded.
	CloudCalls(action string, now time.Time) (perSecond []int32, throttled int32)
}

// Status is the budget at one moment, as GetBudgetStatus reports it.
type Status struct {
	// Actions are the read (ExportTasks) and create (ExportLicenseDetail)
	// budgets, in that order.
	Actions []ActionStatus
	// ReadTasks is how many tasks share the read budget.
	ReadTasks int
	// WindowEnd is the end of the calls' window: the start of the second
	// in progress.
	WindowEnd time.Time
}

// ActionStatus is one cloud action's budget.
type ActionStatus struct {
	Action     string
	Configured float64
	Effective  float64
	CloudQuota float64
	// CallsPerSecond and Throttled are the calls of the window, oldest
	// first, and the refused ones among them.
	CallsPerSecond []int32
	Throttled      int32
}

// Reporter makes the budget's Status.
type Reporter struct {
	// Calls counts the cloud calls; Read and Create are the two actions'
	// engines; Tasks, when set, counts the tasks sharing the read budget.
	Calls        CallCounter
	Read, Create Engine
	Tasks        func() int
}

// Status reports the budget at now.
func (r *Reporter) Status(now time.Time) Status {
	action := func(name string, e Engine) ActionStatus {
		perSecond, throttled := r.Calls.CloudCalls(name, now)
		return ActionStatus{Action: name, Configured: e.Configured(), Effective: e.Rate(), CloudQuota: CloudQuota,
			CallsPerSecond: perSecond, Throttled: throttled}
	}
	st := Status{
		Actions: []ActionStatus{
			action(cloud.ActionExportTasks, r.Read),
			action(cloud.ActionExportLicenseDetail, r.Create),
		},
		WindowEnd: now.Truncate(time.Second),
	}
	if r.Tasks != nil {
		st.ReadTasks = r.Tasks()
	}
	return st
}
