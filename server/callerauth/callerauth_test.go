package callerauth

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const benchToken = "bench-token-0123456789abcdef"

func call(b testing.TB, a Interceptors, ctx context.Context) (string, error) {
	var caller string
	_, err := a.Unary()(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/cwpexport.v1.LicenseExportService/GetExportTask"},
		func(ctx context.Context, _ any) (any, error) { caller = Caller(ctx); return nil, nil })
	return caller, err
}

func TestUnaryInterceptor(t *testing.T) {
	tok, err := ParseTokens("ops " + benchToken)
	if err != nil {
		t.Fatal(err)
	}
	a := Interceptors{Tokens: tok}
	good := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+benchToken))
	if caller, err := call(t, a, good); err != nil || caller != "ops" {
		t.Errorf("valid token: caller %q, %v", caller, err)
	}
	if _, err := call(t, a, context.Background()); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no token: %v", err)
	}
	if caller, err := call(t, Interceptors{}, context.Background()); err != nil || caller != "" {
		t.Errorf("authentication off: caller %q, %v", caller, err)
	}
	_, err = Interceptors{Tokens: tok}.Unary()(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"},
		func(context.Context, any) (any, error) { return nil, nil })
	if err != nil {
		t.Errorf("health check without a token: %v", err)
	}
}

// BenchmarkUnary measures the interceptor's cost per call, with
// authentication off as the baseline.
func BenchmarkUnary(b *testing.B) {
	tok, _ := ParseTokens("ops " + benchToken)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+benchToken))
	for _, bc := range []struct {
		name string
		a    Interceptors
	}{{"off", Interceptors{}}, {"bearer", Interceptors{Tokens: tok}}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := call(b, bc.a, ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
