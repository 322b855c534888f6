package service

import (
	"context"
	"fmt"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/access"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/callerauth"
	"github.com/cwpexport/cwpexport/server/exports"
)

// Authorizer tells which tasks a caller may see (see package access).
type Authorizer interface {
	Scope(caller string) access.Scope
}

// scope is what ctx's caller may see: everything when the service does not
// authorize (callers are not authenticated).
func (s *Service) scope(ctx context.Context) access.Scope {
	if s.opts.Access == nil {
		return access.Everything()
	}
	return s.opts.Access.Scope(callerauth.Caller(ctx))
}

// visible returns what the registry holds of task id when ctx's caller may
// see the task. Otherwise it returns the NotFound of a task that does not
// exist (AIP-211): a caller learns nothing of a task it may not see, not
// even that it exists. A task the registry does not know (created outside
// the service) is visible only to a scope of everything, so that nobody
// else makes the service poll the cloud for it.
//
// A refusal takes one registry read, whether the record was cached or not:
// another caller's task (whose record stays cached once read) and an id
// that does not exist (whose absence is cached for a second only) then
// take the same path and the same time, which would otherwise tell them
// apart.
func (s *Service) visible(ctx context.Context, id int64) (exports.Record, error) {
	scope := s.scope(ctx)
	wasCached := s.opts.Saga.Cached(id)
	info, err := s.opts.Saga.Record(ctx, id)
	switch {
	case err != nil && scope.All():
		return exports.Record{}, nil // answer without the record rather than fail a read
	case err != nil:
		return exports.Record{}, apierror.Registry(ctx, err)
	case info.Recorded && scope.Allows(info.Creator), !info.Recorded && scope.All():
		return info, nil
	case wasCached:
		// The registry's answer stands over the cache's: another replica
		// may have recorded the task since.
		rec, err := s.opts.Saga.Reread(ctx, id)
		if err != nil {
			return exports.Record{}, apierror.Registry(ctx, err)
		}
		if rec.Recorded && scope.Allows(rec.Creator) {
			return rec, nil
		}
	}
	return exports.Record{}, taskNotFound(id)
}

// taskNotFound is the answer about a task a caller may not see, the same
// whether the task exists or not.
func taskNotFound(id int64) error {
	return apierror.New(cwpexportv1.ErrorReason_TASK_NOT_FOUND, fmt.Sprintf("export task %d was not found", id)).Meta(apierror.MetadataTaskID, fmt.Sprint(id)).Err()
}
