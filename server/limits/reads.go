package limits

import (
	"context"
	"fmt"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/ratelimit"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/callerauth"
)

// Defaults of the per-caller bound on reads.
const (
	DefaultReadsPerCaller = 10
	DefaultReadBurst      = 20
)

// readMethods are the unary reads the bound applies to; creations have
// their share of the export budget, streams their count.
var readMethods = map[string]bool{
	"/cwpexport.v1.LicenseExportService/GetExportTask":   true,
	"/cwpexport.v1.LicenseExportService/ListExportTasks": true,
}

// Reads bounds each authenticated caller's rate of unary reads, so that one
// caller's reads cannot take the service from the others. Without caller
// authentication there is no caller to bound, as for Streams.
type Reads struct {
	buckets *PerCaller
}

var _ ratelimit.Limiter = (*Reads)(nil)

// NewReads returns a bound of perSecond reads per caller in bursts of
// burst; zero values take the defaults.
func NewReads(perSecond float64, burst int) *Reads {
	if perSecond <= 0 {
		perSecond = DefaultReadsPerCaller
	}
	if burst <= 0 {
		burst = DefaultReadBurst
	}
	return &Reads{buckets: NewPerCaller(rate.Limit(perSecond), burst)}
}

// Limit takes one read from ctx's caller's bucket, or returns
// ResourceExhausted with the time to retry in.
func (r *Reads) Limit(ctx context.Context) error {
	caller := callerauth.Caller(ctx)
	if caller == "" {
		return nil
	}
	delay, ok := r.buckets.Take(caller, time.Now())
	if ok {
		return nil
	}
	return apierror.New(cwpexportv1.ErrorReason_CALLER_READ_RATE_EXCEEDED, fmt.Sprintf(
		"caller %q reads faster than the %.3g calls per second (bursts of %d) one caller may make; retry in %s",
		caller, float64(r.buckets.Limit), r.buckets.Burst, delay.Round(time.Millisecond))).RetryAfter(delay).Err()
}

// Interceptor applies the bound to the unary reads; place it after caller
// authentication. It returns Limit's status as it is: go-grpc-middleware's
// ratelimit interceptor would rewrite it into a bare message, dropping the
// ErrorInfo and RetryInfo every error of the service carries.
func (r *Reads) Interceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if readMethods[info.FullMethod] {
			if err := r.Limit(ctx); err != nil {
				return nil, err
			}
		}
		return handler(ctx, req)
	}
}
