package limits

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cwpexport/cwpexport/server/apierror"
	"github.com/cwpexport/cwpexport/server/callerauth"
)

func TestReadsPerCaller(t *testing.T) {
	r := NewReads(0.001, 3) // a burst of 3, then nothing for the test's life
	intercept := r.Interceptor()
	call := func(caller, method string) error {
		ctx := callerauth.WithCaller(context.Background(), caller)
		_, err := intercept(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method}, func(context.Context, any) (any, error) { return nil, nil })
		return err
	}
	const get = "/cwpexport.v1.LicenseExportService/GetExportTask"
	refused := 0
	for range 5 {
		if err := call("alice", get); err != nil {
			refused++
			_, retry := apierror.RetryDelay(err)
			if status.Code(err) != codes.ResourceExhausted || !retry {
				t.Errorf("refusal %v without RetryInfo", err)
			}
		}
	}
	if refused != 2 {
		t.Errorf("alice: %d of 5 reads refused, want 2", refused)
	}
	if err := call("bob", get); err != nil {
		t.Errorf("bob is limited by alice's reads: %v", err)
	}
	if err := call("alice", "/cwpexport.v1.LicenseExportService/ExportLicenseDetail"); err != nil {
		t.Errorf("a creation counted as a read: %v", err)
	}
	for range 5 {
		if err := call("", get); err != nil {
			t.Fatalf("an unauthenticated caller was limited: %v", err)
		}
	}
}
